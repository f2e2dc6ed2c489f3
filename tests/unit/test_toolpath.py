"""edibuild runs its own virtualenv's tools whatever the caller's PATH holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edibuild import run
from edibuild.errors import CommandFailed
from edibuild.host import toolpath


def test_own_bin_comes_first_and_is_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    own = os.fspath(toolpath.OWN_BIN)
    monkeypatch.setenv("PATH", f"/usr/bin:{own}:/bin")
    assert toolpath.search_path().split(os.pathsep) == [own, "/usr/bin", "/bin"]


def test_without_path_the_system_directories_are_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATH")
    parts = toolpath.search_path().split(os.pathsep)
    assert parts[0] == os.fspath(toolpath.OWN_BIN) and "/usr/bin" in parts


def test_a_tool_of_our_own_bin_is_found_with_a_bare_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure of a fresh machine: ansible-playbook lives in .venv/bin only."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    found = toolpath.find("ansible-playbook")
    assert found is not None and found.parent == toolpath.OWN_BIN
    out = run.output(["ansible-playbook", "--version"])  # the run helper finds it too
    assert "ansible-playbook" in out


def test_a_missing_command_says_where_it_was_looked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", os.fspath(tmp_path))
    with pytest.raises(CommandFailed) as caught:
        run.run(["mkfs.vfat", "--help"])
    text = str(caught.value)
    assert "mkfs.vfat not found (looked in " in text and os.fspath(tmp_path) in text
    assert "apt-get install dosfstools" in text
    assert "rc 127" not in text
