"""Unit tests for edibuild.host.packages: the package map and the setup stamp."""

from __future__ import annotations

import subprocess
from pathlib import Path

from edibuild.host import commands, packages

REPO = Path(__file__).resolve().parents[2]


def test_package_for_names_the_debian_package() -> None:
    assert commands.package_for("mkfs.vfat") == "dosfstools"
    assert commands.package_for("/usr/sbin/sfdisk") == "fdisk"
    assert commands.package_for("lxc") == "lxd-client"
    assert commands.package_for("qemu-riscv64-static") == "qemu-user-static"
    assert commands.package_for("no-such-tool") is None


def test_every_host_command_comes_from_a_listed_package() -> None:
    for command, package in commands.HOST_COMMANDS:
        assert package in packages.DEBIAN_PACKAGES, command
    assert len(set(packages.DEBIAN_PACKAGES)) == len(packages.DEBIAN_PACKAGES)
    assert "python3-venv" in packages.DEBIAN_PACKAGES  # the setup itself needs it


def _fake_repo(tmp_path: Path) -> Path:
    (tmp_path / "edibuild/host").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "edibuild/host/packages.py").write_text("DEBIAN_PACKAGES = ('a',)\n")
    return tmp_path


def test_digest_matches_what_the_shell_scripts_compute() -> None:
    shell = subprocess.run(
        ["bash", "-c", "cat pyproject.toml edibuild/host/packages.py | sha256sum"],
        cwd=REPO,
        capture_output=True,
        check=True,
        text=True,
    )
    assert shell.stdout.split()[0] == packages.setup_digest(REPO)


def test_stamp_is_current_until_an_input_changes(tmp_path: Path) -> None:
    repo = _fake_repo(tmp_path)
    assert not packages.setup_is_current(repo)
    (repo / ".venv/bin").mkdir(parents=True)
    (repo / ".venv/bin/doit").write_text("")
    packages.write_stamp(repo)
    assert packages.setup_is_current(repo)
    (repo / "edibuild/host/packages.py").write_text("DEBIAN_PACKAGES = ('a', 'b')\n")
    assert not packages.setup_is_current(repo)


def test_stamp_needs_the_virtualenv(tmp_path: Path) -> None:
    repo = _fake_repo(tmp_path)
    (repo / ".venv").mkdir()
    packages.write_stamp(repo)
    assert not packages.setup_is_current(repo)  # no .venv/bin/doit
