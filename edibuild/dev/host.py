"""The host side of a dev container: the ids LXD may map, and the developer's workspace."""

from __future__ import annotations

from pathlib import Path

from edibuild.dev import idmap
from edibuild.dev.identity import Identity
from edibuild.errors import StageFailed
from edibuild.lxd.protocol import ContainerBackend
from edibuild.run import run, say


def is_snap(backend: ContainerBackend) -> bool:
    """True for the snap's LXD, which maps ids itself and ignores /etc/subuid."""
    return "/snap/" in backend.endpoint.url


def grant_ids(backend: ContainerBackend, who: Identity) -> list[str]:
    """Let LXD map the developer's ids (non-snap LXD: /etc/subuid, /etc/subgid); say so."""
    if who.is_root or is_snap(backend):
        return []
    added = idmap.grant_ids(who.uid, who.gid)
    for line in added:
        say(f"container: added {line} so LXD may map {who.name}'s ids (non-snap LXD)")
    return added


def make_workspace(folder: str, who: Identity) -> bool:
    """Create the workspace as the developer when it is missing; True if it was made."""
    path = Path(folder)
    if path.is_dir():
        return False
    if path.exists() or path.is_symlink():
        raise StageFailed(f"the workspace {folder} exists and is not a folder",
                          hint="move it away, or set `container: {workspace: ...}`")  # fmt: skip
    if who.is_root:
        path.mkdir(parents=True)
    else:
        run(["runuser", "-u", who.name, "--", "mkdir", "-p", "--", folder])
    say(f"container: made the workspace {folder} (as {who.name})")
    return True
