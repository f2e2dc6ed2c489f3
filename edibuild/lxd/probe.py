"""Cheap questions to a local LXD (does this image / instance exist?) without pylxd.

Used by up-to-date checks, which run on every doit invocation: a raw GET on the unix
socket costs milliseconds; importing pylxd costs a third of a second. Remote endpoints
(project `lxd.remote` or EDIBUILD_LXD_REMOTE) return None: ask pylxd then.
"""

from __future__ import annotations

import os

from edibuild.host.lxd_service import api_get, candidates
from edibuild.project import Project


def _local_only(project: Project) -> bool:
    section = project.section("lxd") or {}
    return not section.get("remote") and not os.environ.get("EDIBUILD_LXD_REMOTE")


def exists(project: Project, path: str) -> bool | None:
    """True/False for GET `path` on the first answering local daemon; None if remote."""
    if not _local_only(project):
        return None
    for daemon in candidates():
        if not daemon.socket.exists():
            continue
        try:
            api_get(daemon.socket, path, timeout=5)
            return True
        except OSError as exc:
            if "HTTP 404" in str(exc):
                return False
    return False
