"""Integration tests: find, start and initialise a real LXD daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edibuild.host import lxd_service
from edibuild.lxd import unixhttp
from edibuild.lxd.endpoints import Endpoint
from tests.conftest import require_root, require_tool

pytestmark = pytest.mark.integration


def _lxc(socket: str, *args: str) -> str:
    env = {**os.environ, "LXD_DIR": str(Path(socket).parent)}
    proc = subprocess.run(["lxc", *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_ensure_lxd_gives_a_usable_daemon_and_is_fast_the_second_time() -> None:
    require_root()
    require_tool("lxd", "lxc")
    socket = lxd_service.ensure_lxd()
    assert Path(socket).is_socket()
    start = time.monotonic()
    assert lxd_service.ensure_lxd() == socket
    assert time.monotonic() - start < 1.0
    assert "NAME" in _lxc(socket, "list")
    assert unixhttp.get(Path(socket), "/1.0/storage-pools")  # at least one pool


def _unmount_under(directory: Path) -> None:
    """Unmount what a daemon left mounted under `directory` (deepest first)."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(f"{directory}/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture
def private_lxd_dir() -> Iterator[Path]:
    """An empty LXD_DIR for a daemon of the test's own; stopped and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="edlxd-", dir="/tmp"))  # short: socket path limit
    lxd_dir = base / "lxd"
    lxd_dir.mkdir()
    try:
        yield lxd_dir
    finally:
        env = {**os.environ, "LXD_DIR": str(lxd_dir)}
        if (lxd_dir / "unix.socket").exists():
            subprocess.run(["lxd", "shutdown", "--timeout", "60"], env=env, check=False)
        _unmount_under(base)
        shutil.rmtree(base)


def test_starts_and_initialises_a_bare_daemon(private_lxd_dir: Path) -> None:
    require_root()
    require_tool("lxd", "lxc", "setsid")
    daemon = Endpoint.local(private_lxd_dir / "unix.socket", "lxd", "$LXD_DIR")
    repo = private_lxd_dir.parent / "repo"
    socket = lxd_service.ensure_lxd(repo, [daemon])
    assert socket == str(daemon.socket)
    pools = _lxc(socket, "storage", "list", "--format", "csv")
    assert pools.startswith("default,dir,")
    assert "\nedibuild,btrfs," in pools  # the build pool: containers start from a layer in 1 s
    profile = _lxc(socket, "profile", "device", "show", "default")
    assert "pool: default" in profile and "path: /" in profile
    networks = unixhttp.get(daemon.socket, "/1.0/networks?recursion=1")
    assert not [n["name"] for n in networks if n["managed"]]  # no bridge, no private subnet
    assert "lxd --group root" in (repo / ".edibuild/lxd.log").read_text()
    start = time.monotonic()
    assert lxd_service.ensure_lxd(repo, [daemon]) == socket
    assert time.monotonic() - start < 1.0
    assert lxd_service.ensure_initialised(daemon, repo / "init.log") is False
