"""The wheel carries every package and the shipped projects; a checkout finds its own."""

from __future__ import annotations

import tomllib
from pathlib import Path

from edibuild.config import shipped
from tests.conftest import REPO


def _setuptools() -> dict[str, object]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    tool: dict[str, object] = data["tool"]["setuptools"]
    return tool


def test_every_python_package_of_the_tree_is_listed() -> None:
    listed = set(_setuptools()["packages"])  # type: ignore[arg-type]
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for root in ("edibuild", "stages")
        for init in (REPO / root).rglob("__init__.py")
    }
    assert found <= listed, f"add to pyproject.toml: {sorted(found - listed)}"


def test_the_shipped_projects_are_the_package_data_edibuild_projects() -> None:
    mapping = _setuptools()["package-dir"]
    assert mapping == {"edibuild._projects": "projects"}
    assert shipped.INSTALLED_PROJECTS == Path(shipped.__file__).parents[1] / "_projects"


def test_a_checkout_uses_its_own_projects_folder() -> None:
    assert shipped.directory() == REPO / "projects"
