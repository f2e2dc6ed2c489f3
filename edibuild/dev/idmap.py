"""The id map that makes the shared workspace the developer's on both sides.

An unprivileged container maps its ids to a shifted range on the host (0 -> 100000 ...);
`raw.idmap` maps the developer's uid and gid straight through, so a file the user makes
inside is theirs on the host and the other way round. LXD's `shift=true` disk option
would do it without the map, but LXD 5.0.2 (Debian 12) refuses it on kernels >= 6.9.

A non-snap LXD (and Incus) starts containers through newuidmap/newgidmap, which allow
only what /etc/subuid and /etc/subgid grant root: `root:UID:1` (and `root:GID:1`) must
be there, read at every container start (no daemon restart). The snap's LXD ignores
those files. edibuild adds the missing lines and says so; it never removes any.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
OWNER = "root"  # the user LXD's daemon maps ids as


def raw_idmap(uid: int, gid: int) -> str:
    """LXD's raw.idmap value mapping host uid/gid to the same ids in the container."""
    if uid == gid:
        return f"both {uid} {gid}"
    return f"uid {uid} {uid}\ngid {gid} {gid}"


@dataclass(frozen=True)
class Range:
    """One line of /etc/subuid: `owner:start:count`."""

    owner: str
    start: int
    count: int

    def covers(self, ident: int) -> bool:
        """True when id `ident` lies in this range."""
        return self.start <= ident < self.start + self.count


def ranges(text: str) -> list[Range]:
    """The well-formed lines of a subuid/subgid file (others are ignored, as shadow does)."""
    found = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            found.append(Range(parts[0], int(parts[1]), int(parts[2])))
    return found


def granted(text: str, ident: int, owner: str = OWNER) -> bool:
    """True when the file grants `owner` the id `ident`."""
    return any(r.owner == owner and r.covers(ident) for r in ranges(text))


def with_grant(text: str, ident: int, owner: str = OWNER) -> str | None:
    """The file's text with `owner:ident:1` appended, or None when it is granted already."""
    if granted(text, ident, owner):
        return None
    if text and not text.endswith("\n"):
        text += "\n"
    return f"{text}{owner}:{ident}:1\n"


def grant(path: Path, ident: int, owner: str = OWNER) -> str | None:
    """Add `owner:ident:1` to a subuid/subgid file unless granted; return the line added.

    The file is replaced atomically with its mode kept (a missing file is created 0644).
    """
    text = path.read_text() if path.exists() else ""
    new = with_grant(text, ident, owner)
    if new is None:
        return None
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(new)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"{owner}:{ident}:1"


def grant_ids(uid: int, gid: int, subuid: Path = SUBUID, subgid: Path = SUBGID) -> list[str]:
    """Grant root the developer's uid and gid; return what was added ('/etc/subuid: ...')."""
    added = []
    for path, ident in ((subuid, uid), (subgid, gid)):
        line = grant(path, ident)
        if line is not None:
            added.append(f"{path}: {line}")
    return added
