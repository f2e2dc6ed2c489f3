"""pylxd's and requests' exceptions, turned into the backend's typed errors at one place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import requests
from pylxd import exceptions

from edibuild.lxd.errors import Conflict, NotFound, Refused, Unreachable

LOST_HINT = "is the LXD daemon still running? (lxc list; lxd waitready)"


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise NotFound, Conflict, Refused or Unreachable for what pylxd raises in the block.

    Every other exception (a bug, a local file error) passes through unchanged.
    """
    try:
        yield
    except exceptions.NotFound as exc:
        raise NotFound(f"{what}: {exc or 'not found'}") from exc
    except exceptions.Conflict as exc:
        raise Conflict(f"{what}: {exc}") from exc
    except exceptions.LXDAPIException as exc:
        raise Refused(f"{what}: {exc}") from exc
    except (
        exceptions.ClientConnectionFailed,
        requests.exceptions.RequestException,
        ConnectionError,  # the exec websocket: BrokenPipeError, ConnectionResetError
    ) as exc:
        raise Unreachable(f"{what}: lost the connection to LXD: {exc}", hint=LOST_HINT) from exc
