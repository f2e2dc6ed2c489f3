"""The container backend's typed errors: what went wrong talking to LXD, for code and people.

Callers tell "not there" (`NotFound`) from "cannot ask" (`Unreachable`) by type, never
by the text of a message; every one is an EdibuildError, so it reaches the user as one
message with a hint when nobody handles it.
"""

from __future__ import annotations

from edibuild.errors import EdibuildError

DENIED_HINT = (
    "run as root, or add yourself to the lxd group (usermod -aG lxd $USER, then log in again)"
)


class BackendError(EdibuildError):
    """LXD could not do what edibuild asked."""


class Unreachable(BackendError):
    """No usable answer: no daemon, a refused or lost connection, a TLS or trust problem."""


class Denied(Unreachable):
    """The daemon's socket exists but this user may not talk to it (another daemon won't help)."""


class Refused(BackendError):
    """The daemon answered with an error (LXD's own message is kept)."""


class NotFound(Refused):
    """The object asked for does not exist."""


class Conflict(Refused):
    """The object exists already (another build made it at the same time, say)."""
