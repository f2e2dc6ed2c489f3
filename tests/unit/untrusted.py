"""Shared helpers of the untrusted-config tests (test_untrusted_*.py): load and plan a
projects folder the way dodo.py does, and check that a refusal names file, line and key.

One module so the three test modules (templates, names and paths, values and parsing)
refuse and check in one way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edibuild.config import Host, load_projects
from edibuild.config.project import Project
from edibuild.engine.session import Session
from edibuild.errors import EdibuildError
from edibuild.store.workspace import Workspace
from stages import all_stages

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "projects"
SHIPPED = FIXTURES / "shipped"
HOST = Host(architecture="amd64", user="tester", hostname="testhost")
BASE = "description: t\nbootstrap:\n  architecture: amd64\n  suite: bookworm\n"


def plan(projects: tuple[Project, ...], folder: Path) -> None:
    """What dodo.py does before doit starts: every stage slice of every project."""
    workspace = Workspace(folder, folder, SHIPPED, folder / "a", folder / "c", folder / "s")
    Session(workspace, projects, all_stages()).validate()


def refusal(folder: Path) -> EdibuildError:
    """Load and plan a projects folder that must be refused; return the error."""
    with pytest.raises(EdibuildError) as caught:
        plan(load_projects(folder, shipped_dir=SHIPPED, host=HOST), folder)
    return caught.value


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def assert_at(error: EdibuildError, file: Path, line: int | None, key: str | None) -> None:
    """The error names the file, the line and the key, and carries a hint."""
    assert error.location is not None, error
    assert (error.location.file, error.location.line, error.key) == (file, line, key), str(error)
    assert error.hint, str(error)
    where = f"{file}:{line}: " if line else f"{file}: "
    assert str(error).startswith(where + (f"{key}: " if key else "")), str(error)
