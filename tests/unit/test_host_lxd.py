"""Unit tests for edibuild.host.lxd_service: socket discovery order, probing, preseed."""

from __future__ import annotations

import json
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from edibuild.errors import EdibuildError
from edibuild.host import lxd_service
from edibuild.host.lxd_service import Daemon


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="edhost-", dir="/tmp") as name:
        yield Path(name)


class _Handler(BaseHTTPRequestHandler):
    """Answer GETs like LXD, from the server's `routes` (path -> metadata)."""

    def do_GET(self) -> None:
        routes: dict[str, Any] = self.server.routes  # type: ignore[attr-defined]
        found = self.path in routes
        body = {"type": "sync", "status_code": 200, "metadata": routes.get(self.path)}
        if not found:
            body = {"type": "error", "error_code": 404, "error": "not found"}
        data = json.dumps(body).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FakeLxd(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _serve(path: Path, routes: dict[str, Any]) -> _FakeLxd:
    path.parent.mkdir(parents=True, exist_ok=True)
    server = _FakeLxd(str(path), _Handler)
    server.routes = routes  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server


def _stale_socket(path: Path) -> None:
    """Leave a socket file nobody listens on (what a crashed daemon leaves behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


def test_candidates_in_order_with_lxd_dir(tmp_path: Path) -> None:
    found = lxd_service.candidates({"LXD_DIR": "/srv/lxd"}, root=tmp_path)
    assert [d.socket for d in found] == [
        Path("/srv/lxd/unix.socket"),
        tmp_path / "var/lib/lxd/unix.socket",
        tmp_path / "var/snap/lxd/common/lxd/unix.socket",
        tmp_path / "var/lib/incus/unix.socket",
    ]
    assert [d.kind for d in found] == ["lxd", "lxd", "lxd", "incus"]


def test_candidates_without_environment(tmp_path: Path) -> None:
    found = lxd_service.candidates({}, root=tmp_path)
    assert found[0].socket == tmp_path / "var/lib/lxd/unix.socket"
    assert found[-1].env == {"INCUS_DIR": str(tmp_path / "var/lib/incus")}
    assert found[-1].command("init", "--preseed") == ["incus", "admin", "init", "--preseed"]
    assert found[0].command("waitready") == ["lxd", "waitready"]


def test_find_running_skips_stale_and_missing_sockets(short_tmp: Path) -> None:
    daemons = lxd_service.candidates({}, root=short_tmp)
    _stale_socket(daemons[0].socket)  # Debian's: a leftover, nothing listens
    servers = [_serve(d.socket, {"/1.0": {"api_version": "1.0"}}) for d in daemons[2:]]
    try:
        found = lxd_service.find_running(daemons)
        assert found == daemons[2]  # the snap's comes before Incus'
        assert lxd_service.find_running(daemons[:2]) is None
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_find_running_prefers_lxd_dir(short_tmp: Path) -> None:
    daemons = lxd_service.candidates({"LXD_DIR": str(short_tmp / "mine")}, root=short_tmp)
    servers = [_serve(d.socket, {"/1.0": {}}) for d in daemons]
    try:
        assert lxd_service.find_running(daemons) == daemons[0]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_api_get_raises_oserror_on_http_error(short_tmp: Path) -> None:
    server = _serve(short_tmp / "unix.socket", {"/1.0": {"x": 1}})
    try:
        assert lxd_service.api_get(short_tmp / "unix.socket", "/1.0") == {"x": 1}
        with pytest.raises(OSError, match="404"):
            lxd_service.api_get(short_tmp / "unix.socket", "/1.0/nothing")
    finally:
        server.shutdown()
        server.server_close()


def test_initialised_daemon_is_left_alone(short_tmp: Path) -> None:
    routes = {"/1.0/storage-pools": ["/1.0/storage-pools/fast"]}
    server = _serve(short_tmp / "unix.socket", routes)
    try:
        daemon = Daemon(short_tmp / "unix.socket", "lxd", "test")
        # Nothing is run: with a pool present, it returns before calling `lxd init`.
        assert lxd_service.ensure_initialised(daemon, short_tmp / "log") is False
        assert not (short_tmp / "log").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_preseed_adds_root_disk_only_when_missing() -> None:
    bare = lxd_service.preseed_for({})
    assert bare["storage_pools"] == [{"name": "default", "driver": "dir"}]
    root = bare["profiles"][0]["devices"]["root"]
    assert root == {"type": "disk", "path": "/", "pool": "default"}
    assert "networks" not in bare  # never a bridge: private subnets are forbidden here
    with_root = lxd_service.preseed_for({"rootfs": {"type": "disk", "path": "/", "pool": "x"}})
    assert "profiles" not in with_root


def test_nothing_installed_says_how_to_install(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if Path("/snap/bin/lxd").exists():
        pytest.skip("the LXD snap is installed here")
    monkeypatch.setenv("PATH", str(short_tmp))  # no lxd, no incus
    daemons = lxd_service.candidates({}, root=short_tmp)
    with pytest.raises(EdibuildError) as info:
        lxd_service.ensure_lxd(short_tmp, daemons)
    assert "no LXD or Incus found" in str(info.value)
    hint = info.value.hint or ""
    assert "apt-get install lxd" in hint and "lxd init" in hint and "lxd --group root" in hint
