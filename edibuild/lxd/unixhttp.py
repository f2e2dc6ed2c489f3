"""GET requests to the LXD REST API over a local unix socket (standard library only).

Cheap (milliseconds, no pylxd import: up-to-date checks run on every doit invocation)
and usable from the system Python before edibuild's virtualenv exists (host setup).
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edibuild.lxd.errors import DENIED_HINT, Denied, NotFound, Refused, Unreachable


class _UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a unix socket (the LXD REST API's local transport)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("lxd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Connect to the unix socket instead of a TCP host."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Reply:
    """What the daemon answered: the HTTP status, the metadata and LXD's error text."""

    status: int
    metadata: Any
    error: str


def request(sock: Path, path: str, timeout: float = 10.0) -> Reply:
    """GET `path` at `sock`; raise Denied or Unreachable when no LXD answers there."""
    conn = _UnixHTTPConnection(sock, timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
    except PermissionError as exc:
        raise Denied(f"cannot talk to LXD at {sock}: {exc.strerror}", hint=DENIED_HINT) from exc
    except OSError as exc:
        raise Unreachable(f"nothing answers at {sock}: {exc.strerror or exc}") from exc
    except (http.client.HTTPException, ValueError) as exc:
        raise Unreachable(f"{sock} did not answer like LXD: {exc}") from exc
    finally:
        conn.close()
    if not isinstance(body, dict):
        raise Unreachable(f"{sock} did not answer like LXD: {body!r:.80}")
    return Reply(response.status, body.get("metadata"), str(body.get("error") or ""))


def get(sock: Path, path: str, timeout: float = 10.0) -> Any:
    """Return the metadata of GET `path`; NotFound for HTTP 404, Refused for other errors."""
    reply = request(sock, path, timeout)
    if reply.status == 404:
        raise NotFound(f"{sock}: GET {path}: {reply.error or 'not found'}")
    if reply.status != 200:
        raise Refused(f"{sock}: GET {path} returned HTTP {reply.status}: {reply.error}")
    return reply.metadata
