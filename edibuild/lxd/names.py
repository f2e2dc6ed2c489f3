"""Names and ownership labels of every LXD object edibuild makes (no pylxd: used when planning).

The scheme, the same for every object:

- Names start with `edibuild-` and say what the object is for:
  - `edibuild-<key16>`: the image the import stage made for a stage key (images are
    content addressed and shared by projects with the same bootstrap);
    `edibuild-project-<project>`: a second alias on the image a project uses;
  - `edibuild-layer-<project>-<key16>`: a configure layer (an image);
  - `edibuild-<project>-configure-<key8>-<random4>`: a configure container, and
    `<container>-<profile key>`: the profiles made for it;
  - `edibuild-dev-<project>` (or the project's `container.name`): the dev container,
    `edibuild-dev-<project>-<key12>`: the images it was launched from.
- Instances and profiles carry `user.edibuild.project=<project>`: edibuild touches an
  instance only when this label names the project. An instance without it (made before
  every instance was labelled) counts as the project's when its name has the project's
  edibuild prefix, so nothing needs migrating.
- Transient instances (a build's container) also carry `user.edibuild.owner=<host>:<pid>`,
  the process using it: when that process is gone the next run removes the leftover.
- Images have no owner label (projects share them): their aliases say who uses them.
  Only aliases matching a project's exact pattern count as the project's. An image a
  build publishes (a layer, configure's temporary export) carries the project and
  owner as properties until it is named: one without alias whose owner is gone was
  left by a killed run and is deleted by the project's next configure run. So are
  profiles (labelled like transient instances) whose owner is gone.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path

PREFIX = "edibuild-"
PROJECT_ALIAS = f"{PREFIX}project-"
LAYER_PREFIX = f"{PREFIX}layer-"
DEV_PREFIX = f"{PREFIX}dev-"
PROJECT_LABEL = "user.edibuild.project"
OWNER_LABEL = "user.edibuild.owner"
# The btrfs storage pool the host setup adds for build containers (edibuild/host/lxd_service.py).
BUILD_POOL = "edibuild"


def safe_name(text: str) -> str:
    """Return `text` as a valid LXD instance name part (lowercase letters, digits, -)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned or "x"


# -- images ---------------------------------------------------------------------------


def image_alias(key: str) -> str:
    """The alias of the image the import stage made for stage key `key`."""
    return f"{PREFIX}{key[:16]}"


def project_alias(project: str, artifacts: Path | None = None) -> str:
    """The alias that marks the image `project` currently uses in the checkout whose artifact
    folder is `artifacts` (two checkouts of one project build different keys: each keeps its
    own image); without `artifacts`, the checkout-less alias of edibuild before 2026-12."""
    if artifacts is None:
        return f"{PROJECT_ALIAS}{project}"
    checkout = hashlib.sha256(os.fsencode(artifacts)).hexdigest()[:8]
    return f"{PROJECT_ALIAS}{project}-{checkout}"


def layer_alias(project: str, key: str) -> str:
    """The alias of the project's configure layer with key `key`."""
    return f"{LAYER_PREFIX}{safe_name(project)[:30]}-{key[:16]}"


def layer_pattern(project: str) -> re.Pattern[str]:
    """Matches exactly the aliases of this project's layers (not those of `<project>-x`)."""
    name = re.escape(safe_name(project)[:30])
    return re.compile(rf"^{re.escape(LAYER_PREFIX)}{name}-[0-9a-f]{{16}}$")


def dev_image_alias(project: str, key: str) -> str:
    """The alias of the image the project's dev container is launched from."""
    return f"{DEV_PREFIX}{safe_name(project)}-{key[:12]}"


def dev_image_pattern(project: str) -> re.Pattern[str]:
    """Matches exactly the aliases of this project's dev-container images."""
    return re.compile(rf"^{re.escape(DEV_PREFIX + safe_name(project))}-[0-9a-f]{{12}}$")


# -- instances and profiles -------------------------------------------------------------


def configure_prefix(project: str) -> str:
    """The name prefix of the project's configure containers."""
    return f"{PREFIX}{safe_name(project)[:30]}-configure-"


def configure_container(project: str, key: str) -> str:
    """A fresh configure container name: prefix, short key and a random suffix."""
    return f"{configure_prefix(project)}{key[:8]}-{secrets.token_hex(2)}"


def profile(instance: str, key: str) -> str:
    """The name of the profile made from profile plugin `key` for `instance`."""
    return f"{instance}-{safe_name(key)}"


def dev_container(project: str) -> str:
    """The default name of the project's dev container."""
    return f"{DEV_PREFIX}{safe_name(project)}"


# -- ownership labels ---------------------------------------------------------------------


def labels(project: str, *, transient: bool = False) -> dict[str, str]:
    """The config keys that mark an object as `project`'s (and, if transient, this process's)."""
    marks = {PROJECT_LABEL: project}
    if transient:
        marks[OWNER_LABEL] = process_mark()
    return marks


def image_marks(project: str) -> dict[str, str]:
    """Image properties marking an image a build publishes as `project`'s and this process's
    (until it has an alias: an unaliased one of an ended process is a leftover)."""
    return {PROJECT_LABEL: project, OWNER_LABEL: process_mark()}


def process_mark() -> str:
    """This process, as the owner label names it: `<host>:<pid>`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def mark_gone(mark: str) -> bool:
    """True when the process an owner label names has ended (another host's: never).

    A mark naming this very process counts as ended: leftovers are removed when a run
    starts, before it made any container, so such a mark is from an earlier process
    that had the same pid.
    """
    host, _, pid = mark.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return not mark  # another machine's build: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()


def belongs_to(config: Mapping[str, str], project: str, name: str = "", prefix: str = "") -> bool:
    """True when an instance's config labels it `project`'s.

    Without a label, an instance whose `name` starts with the project's `prefix` counts
    as the project's (it was made before every instance was labelled); pass no prefix
    when the name alone proves nothing (a dev container's name is the user's choice).
    """
    label = config.get(PROJECT_LABEL)
    if label is not None:
        return label == project
    return bool(prefix) and name.startswith(prefix)
