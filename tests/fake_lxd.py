"""A tiny fake LXD for tests: a unix-socket HTTP server answering GETs from a route table."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Status:
    """A route answered with an error status instead of metadata."""

    code: int
    error: str = "failed"


class _Handler(BaseHTTPRequestHandler):
    """Answer GETs like LXD, from the server's `routes` (path -> metadata or Status)."""

    def do_GET(self) -> None:
        routes: dict[str, Any] = self.server.routes  # type: ignore[attr-defined]
        self.server.asked.append(self.path)  # type: ignore[attr-defined]
        answer = routes.get(self.path, Status(404, "not found"))
        if isinstance(answer, Status):
            code = answer.code
            body = {"type": "error", "error_code": code, "error": answer.error}
        else:
            code, body = 200, {"type": "sync", "status_code": 200, "metadata": answer}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeLxd(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The server; `asked` lists the paths it was asked for."""

    daemon_threads = True
    routes: dict[str, Any]
    asked: list[str]


def serve(path: Path, routes: dict[str, Any]) -> FakeLxd:
    """Start a fake LXD on unix socket `path` (stop it with `stop`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    server = FakeLxd(str(path), _Handler)
    server.routes, server.asked = routes, []
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server


def stop(server: FakeLxd) -> None:
    """Stop a fake LXD and close its socket."""
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def serving(path: Path, routes: dict[str, Any]) -> Iterator[FakeLxd]:
    """A fake LXD on `path` for the block."""
    server = serve(path, routes)
    try:
        yield server
    finally:
        stop(server)


def stale_socket(path: Path) -> None:
    """Leave a socket file nobody listens on (what a crashed daemon leaves behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
