"""Real bootstraps from Debian's mirror through the real `doit` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROJECTS = Path(__file__).resolve().parent / "projects"


class Workspace:
    """A private projects folder, artifacts and state for one test module."""

    def __init__(self, tmp: Path, cache: Path) -> None:
        self.tmp = tmp
        self.cache = cache
        self.projects = tmp / "projects"
        shutil.copytree(PROJECTS, self.projects)

    def doit(self, *args: str) -> str:
        env = dict(os.environ)
        env.update(
            EDIBUILD_PROJECTS=str(self.projects),
            EDIBUILD_STATE=str(self.tmp / "state"),
            EDIBUILD_ARTIFACTS=str(self.tmp / "artifacts"),
            EDIBUILD_CACHE=str(self.cache),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "doit", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        return out

    def manifest(self, project: str) -> dict:  # type: ignore[type-arg]
        path = self.tmp / "artifacts" / project / "bootstrap.manifest.json"
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def edit(self, project: str, old: str, new: str) -> None:
        path = self.projects / f"{project}.yml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Workspace:
    require_root()
    require_tool("mmdebstrap", "debootstrap", "zstd")
    return Workspace(tmp_path_factory.mktemp("bootstrap"), shared_cache)


def test_bootstrap_builds_a_rootfs_tarball_with_a_manifest(ws: Workspace) -> None:
    out = ws.doit("bootstrap:it-bookworm-amd64")
    assert ".  bootstrap:it-bookworm-amd64" in out
    manifest = ws.manifest("it-bookworm-amd64")
    names = {p["name"] for p in manifest["info"]["packages"]}
    assert {"base-files", "dpkg", "apt"} <= names
    assert manifest["info"]["release"]["sha256"]
    tarball = ws.tmp / "artifacts" / "it-bookworm-amd64" / "bootstrap.tar.zst"
    listing = subprocess.run(
        ["tar", "--zstd", "-tf", tarball], capture_output=True, text=True, check=True
    ).stdout
    assert "./etc/debian_version" in listing.splitlines()


def test_second_run_does_nothing(ws: Workspace) -> None:
    out = ws.doit("bootstrap:it-bookworm-amd64")
    assert "-- bootstrap:it-bookworm-amd64" in out
    assert "building" not in out


def test_edit_reruns_with_debootstrap_and_revert_reuses_the_cache(ws: Workspace) -> None:
    first = ws.manifest("it-bookworm-amd64")["outputs"]["rootfs"]["sha256"]
    ws.edit(
        "it-bookworm-amd64",
        "tool: mmdebstrap\n  packages: [python3, systemd-sysv]",
        "tool: debootstrap\n  packages: [python3, systemd-sysv, hello]",
    )
    out = ws.doit("bootstrap:it-bookworm-amd64")
    assert ".  bootstrap:it-bookworm-amd64" in out and "building" in out
    names = {p["name"] for p in ws.manifest("it-bookworm-amd64")["info"]["packages"]}
    assert "hello" in names
    ws.edit(
        "it-bookworm-amd64",
        "tool: debootstrap\n  packages: [python3, systemd-sysv, hello]",
        "tool: mmdebstrap\n  packages: [python3, systemd-sysv]",
    )
    out = ws.doit("bootstrap:it-bookworm-amd64")
    assert "reused from the cache" in out
    assert ws.manifest("it-bookworm-amd64")["outputs"]["rootfs"]["sha256"] == first


def test_clean_forget_rebuilds_bit_identical_output(ws: Workspace) -> None:
    first = ws.manifest("it-bookworm-amd64")["outputs"]["rootfs"]["sha256"]
    ws.doit("clean", "--forget", "bootstrap:it-bookworm-amd64")
    assert not (ws.tmp / "artifacts" / "it-bookworm-amd64" / "bootstrap.tar.zst").exists()
    out = ws.doit("bootstrap:it-bookworm-amd64")
    assert "building" in out
    assert ws.manifest("it-bookworm-amd64")["outputs"]["rootfs"]["sha256"] == first


def test_foreign_architecture_bootstraps_through_emulation(ws: Workspace) -> None:
    require_tool("update-binfmts")
    ws.doit("bootstrap:it-bookworm-arm64")
    packages = ws.manifest("it-bookworm-arm64")["info"]["packages"]
    libc = next(p for p in packages if p["name"] == "libc6")
    assert libc["architecture"] == "arm64"
