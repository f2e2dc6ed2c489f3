"""Which projects a `doit run` loads: the named ones, or all whenever in doubt."""

from __future__ import annotations

import pytest

from edibuild.doit_ext import selection

STEMS = ("pi3", "qemu", "dev")


@pytest.mark.parametrize(
    ("names", "wanted"),
    [
        (["image:qemu"], {"qemu"}),
        (["image:qemu", "why:pi3"], {"pi3", "qemu"}),
        (["configure:qemu", "--budget=1G"], {"qemu"}),
        (["image:qemu", "X=1"], {"qemu"}),
    ],
)
def test_named_projects_are_loaded_alone(names: list[str], wanted: set[str]) -> None:
    assert selection.wanted(STEMS, names) == wanted


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["image"],  # a group: every project's image
        ["trim"],  # a helper without a project
        ["image:q*"],  # a glob
        ["image:qemo"],  # misspelt: the error lists every project
        ["image:qemu", "trim"],
        [":qemu"],
        ["--budget"],
        ["image:qemu", "--budget", "1G"],  # an option value reads as a name: all
    ],
)
def test_anything_else_loads_every_project(names: list[str]) -> None:
    assert selection.wanted(STEMS, names) is None


def test_the_request_lasts_until_forgotten() -> None:
    selection.request(["image:dev"])
    try:
        assert selection.wanted(STEMS) == {"dev"}
    finally:
        selection.forget()
    assert selection.wanted(STEMS) is None
