"""GET requests to the LXD REST API over a local unix socket (standard library only).

Cheap (milliseconds, no pylxd import: up-to-date checks run on every doit invocation)
and usable from the system Python before edibuild's virtualenv exists (host setup).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edibuild.lxd.errors import DENIED_HINT, Denied, NotFound, Refused, Unreachable

# Answers are small JSON documents; a bigger one is not LXD's.
_MAX_REPLY = 16 * 1024 * 1024


@dataclass(frozen=True)
class Reply:
    """What the daemon answered: the HTTP status, the metadata and LXD's error text."""

    status: int
    metadata: Any
    error: str


def request(sock: Path, path: str, timeout: float = 10.0) -> Reply:
    """GET `path` at `sock`; raise Denied or Unreachable when no LXD answers there.

    An HTTP/1.0 request read to the end of the connection: http.client (and the ssl and
    email modules it loads) would cost more than the request on every no-op."""
    try:
        raw = _exchange(sock, f"GET {path} HTTP/1.0\r\nHost: lxd\r\n\r\n".encode(), timeout)
    except PermissionError as exc:
        raise Denied(f"cannot talk to LXD at {sock}: {exc.strerror}", hint=DENIED_HINT) from exc
    except OSError as exc:
        raise Unreachable(f"nothing answers at {sock}: {exc.strerror or exc}") from exc
    status, body = _parse(sock, raw)
    return Reply(status, body.get("metadata"), str(body.get("error") or ""))


def _exchange(sock: Path, message: bytes, timeout: float) -> bytes:
    """Send `message` on the unix socket and read the answer until the daemon closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock))
        conn.sendall(message)
        chunks: list[bytes] = []
        size = 0
        while chunk := conn.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_REPLY:
                raise Unreachable(f"{sock} did not answer like LXD: more than 16 MiB")
        return b"".join(chunks)


def _parse(sock: Path, raw: bytes) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of an HTTP/1.x answer, or Unreachable if it is not one."""
    head, _, payload = raw.partition(b"\r\n\r\n")
    words = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(words) < 2 or not words[0].startswith(b"HTTP/1.") or not words[1].isdigit():
        raise Unreachable(f"{sock} did not answer like LXD: {head[:80]!r}")
    try:
        body = json.loads(payload or b"{}")
    except ValueError as exc:
        raise Unreachable(f"{sock} did not answer like LXD: {exc}") from exc
    if not isinstance(body, dict):
        raise Unreachable(f"{sock} did not answer like LXD: {body!r:.80}")
    return int(words[1]), body


def get(sock: Path, path: str, timeout: float = 10.0) -> Any:
    """Return the metadata of GET `path`; NotFound for HTTP 404, Refused for other errors."""
    reply = request(sock, path, timeout)
    if reply.status == 404:
        raise NotFound(f"{sock}: GET {path}: {reply.error or 'not found'}")
    if reply.status != 200:
        raise Refused(f"{sock}: GET {path} returned HTTP {reply.status}: {reply.error}")
    return reply.metadata
