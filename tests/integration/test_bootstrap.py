"""Real bootstraps from Debian's mirror through the real `doit` command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root, require_tool
from tests.workspace import DoitWorkspace

pytestmark = pytest.mark.integration

PROJECTS = Path(__file__).resolve().parent / "projects"


class Workspace(DoitWorkspace):
    """The integration projects in a private workspace, with the session's cache."""

    def manifest(self, project: str) -> dict[str, Any]:
        path = self.artifacts(project) / "bootstrap.manifest.json"
        return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Workspace:
    require_root()
    require_tool("mmdebstrap", "debootstrap", "zstd")
    return Workspace(tmp_path_factory.mktemp("bootstrap"), PROJECTS, shared_cache)


def test_bootstrap_builds_a_rootfs_tarball_with_a_manifest(ws: Workspace) -> None:
    out = ws.doit("bootstrap:it-bookworm-amd64")
    assert ".  bootstrap:it-bookworm-amd64" in out
    manifest = ws.manifest("it-bookworm-amd64")
    names = {p["name"] for p in manifest["info"]["packages"]}
    assert {"base-files", "dpkg", "apt"} <= names
    assert manifest["info"]["release"]["sha256"]
    tarball = ws.artifacts("it-bookworm-amd64") / "bootstrap.tar.zst"
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
        "it-bookworm-amd64.yml",
        "tool: mmdebstrap\n  packages: [python3, systemd-sysv]",
        "tool: debootstrap\n  packages: [python3, systemd-sysv, hello]",
    )
    out = ws.doit("bootstrap:it-bookworm-amd64")
    assert ".  bootstrap:it-bookworm-amd64" in out and "building" in out
    names = {p["name"] for p in ws.manifest("it-bookworm-amd64")["info"]["packages"]}
    assert "hello" in names
    ws.edit(
        "it-bookworm-amd64.yml",
        "tool: debootstrap\n  packages: [python3, systemd-sysv, hello]",
        "tool: mmdebstrap\n  packages: [python3, systemd-sysv]",
    )
    out = ws.doit("bootstrap:it-bookworm-amd64")
    assert "reused from the cache" in out
    assert ws.manifest("it-bookworm-amd64")["outputs"]["rootfs"]["sha256"] == first


def test_clean_forget_rebuilds_bit_identical_output(ws: Workspace) -> None:
    first = ws.manifest("it-bookworm-amd64")["outputs"]["rootfs"]["sha256"]
    ws.doit("clean", "--forget", "bootstrap:it-bookworm-amd64")
    assert not (ws.artifacts("it-bookworm-amd64") / "bootstrap.tar.zst").exists()
    out = ws.doit("bootstrap:it-bookworm-amd64")
    assert "building" in out
    assert ws.manifest("it-bookworm-amd64")["outputs"]["rootfs"]["sha256"] == first


def test_foreign_architecture_bootstraps_through_emulation(ws: Workspace) -> None:
    require_tool("update-binfmts")
    ws.doit("bootstrap:it-bookworm-arm64")
    packages = ws.manifest("it-bookworm-arm64")["info"]["packages"]
    libc = next(p for p in packages if p["name"] == "libc6")
    assert libc["architecture"] == "arm64"
