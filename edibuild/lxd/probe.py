"""Cheap up-to-date questions (is this image, this instance still in LXD?) for doit.

They run on every doit invocation, so a local daemon is asked with one raw GET on its
unix socket (milliseconds; pylxd, a third of a second to import, stays unloaded). A
remote endpoint is asked through the client. The answer is True or False; a daemon
that cannot be asked raises Unreachable (with a hint), never a silent False.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edibuild.lxd import unixhttp
from edibuild.lxd.endpoints import INSTALL_HINT, Endpoint, candidates
from edibuild.lxd.errors import Denied, Refused, Unreachable


def _first_answer(tried: Sequence[Endpoint], path: str) -> tuple[Endpoint, unixhttp.Reply]:
    """GET `path` from the first local daemon that answers; Unreachable when none does."""
    for endpoint in tried:
        try:
            return endpoint, unixhttp.request(endpoint.socket, path, timeout=5.0)
        except Denied:
            raise
        except Unreachable:
            continue
    names = ", ".join(e.url for e in tried)
    raise Unreachable(f"no LXD daemon answers (tried: {names})", hint=INSTALL_HINT)


def _exists_locally(
    settings: Mapping[str, Any] | None, path: str, env: Mapping[str, str], root: Path
) -> bool | None:
    """True/False from the first local daemon that answers GET `path`; None if remote."""
    tried = candidates(settings, env, root)
    if not tried[0].is_local:
        return None
    endpoint, reply = _first_answer(tried, path)
    if reply.status in (200, 404):
        return reply.status == 200
    raise Refused(f"{endpoint.url}: GET {path} returned HTTP {reply.status}: {reply.error}")


def _exists(
    settings: Mapping[str, Any] | None,
    kind: str,
    name: str,
    env: Mapping[str, str] | None,
    root: Path,
) -> bool:
    if not name:
        return False
    env = os.environ if env is None else env
    local = _exists_locally(settings, f"/1.0/{kind}/{quote(name, safe='')}", env, root)
    if local is not None:
        return local
    from edibuild.lxd import client  # a remote daemon: pylxd speaks https with a client cert

    backend = client.connect(settings, env=env)
    found = backend.image(name) if kind == "images" else backend.instance(name)
    return found is not None


def image_exists(
    settings: Mapping[str, Any] | None,
    fingerprint: str,
    env: Mapping[str, str] | None = None,
    root: Path = Path("/"),
) -> bool:
    """True while the image with `fingerprint` is in the project's LXD."""
    return _exists(settings, "images", fingerprint, env, root)


def instance_exists(
    settings: Mapping[str, Any] | None,
    name: str,
    env: Mapping[str, str] | None = None,
    root: Path = Path("/"),
) -> bool:
    """True while instance `name` is in the project's LXD."""
    return _exists(settings, "instances", name, env, root)


def instance_info(
    settings: Mapping[str, Any] | None,
    name: str,
    env: Mapping[str, str] | None = None,
    root: Path = Path("/"),
) -> dict[str, Any] | None:
    """The status and own config of instance `name` (None when absent), asked cheaply."""
    if not name:
        return None
    env = os.environ if env is None else env
    tried = candidates(settings, env, root)
    if tried[0].is_local:
        path = f"/1.0/instances/{quote(name, safe='')}"
        endpoint, reply = _first_answer(tried, path)
        if reply.status == 404:
            return None
        if reply.status != 200 or not isinstance(reply.metadata, dict):
            raise Refused(f"{endpoint.url}: GET {path} returned HTTP {reply.status}")
        meta = reply.metadata
        return {"status": str(meta.get("status", "")), "config": dict(meta.get("config") or {})}
    from edibuild.lxd import client

    box = client.connect(settings, env=env).instance(name)
    return None if box is None else {"status": box.status, "config": dict(box.config)}
