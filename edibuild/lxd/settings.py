"""The project's `lxd` and `container` sections, parsed at load into frozen settings.

lxd:
  remote: https://lxd.example.com:8443   # default: the local daemon (socket)
  cert: client.crt                        # client certificate and key for a remote
  key: client.key
  verify: true                            # or a CA bundle path, or false
  network: auto                           # auto, default (the profile's NIC), proxy
  layers: true                            # cache states where it pays; every; false
  proxy_hosts: [security.debian.org]      # more hosts the apt proxy may forward to
container:
  name: edi-pi-dev                        # default: edibuild-dev-<project>
  user: me                                # default: SUDO_USER; `root` only when asked
  workspace: ~/edibuild-workspace         # the default; absolute, or below the user's home
  ssh: true                               # sshd, reached by port forward without a bridge
  target: pi3-bookworm-arm64              # the image project the target libraries match
  share: {source: /home/me/work, path: /home/edi/work}   # one more host folder
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from edibuild.config.names import is_name
from edibuild.config.reader import Reader
from edibuild.config.values import USER_NAME
from edibuild.data import Json

LXD_KEYS = ("remote", "cert", "key", "verify", "network", "layers", "proxy_hosts")
NETWORKS = ("auto", "default", "proxy")
# `layers`: true saves the states worth it (see edibuild/lxd/layers.py), `every` the state
# after each playbook but the last, false none.
LAYER_POLICIES = ("auto", "every", "off")
CONTAINER_KEYS = ("name", "user", "workspace", "ssh", "target", "share")
DEFAULT_WORKSPACE = "~/edibuild-workspace"
INSTANCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,62}")


@dataclass(frozen=True)
class LxdSettings:
    """Which LXD to use and how configure's containers reach the mirror."""

    remote: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool | str | None = None  # None: EDIBUILD_LXD_VERIFY, else true
    network: str = "auto"
    layers: str = "auto"  # one of LAYER_POLICIES
    proxy_hosts: tuple[str, ...] = ()

    @property
    def connection(self) -> Mapping[str, Json]:
        """The keys endpoint discovery reads (edibuild/lxd/endpoints.py)."""
        found: dict[str, Json] = {
            "remote": self.remote, "cert": self.cert, "key": self.key, "verify": self.verify,
        }  # fmt: skip
        return {k: v for k, v in found.items() if v is not None}


def parse_lxd(reader: Reader | None) -> LxdSettings:
    """Read the `lxd` section (absent: the local daemon, defaults everywhere)."""
    if reader is None:
        return LxdSettings()
    reader.known(LXD_KEYS)
    verify = reader.raw("verify")
    if verify is not None and not isinstance(verify, bool):
        verify = reader.text("verify", what="true, false or a CA bundle path")
    return LxdSettings(
        remote=reader.optional_text("remote", what="an https:// URL"),
        cert=reader.optional_text("cert", what="a certificate file"),
        key=reader.optional_text("key", what="a key file"),
        verify=verify,
        network=reader.choice("network", NETWORKS, "auto"),
        layers=_layers(reader),
        proxy_hosts=reader.texts("proxy_hosts", what="host names", forbidden="/ :@"),
    )


def _layers(reader: Reader) -> str:
    """`layers`: true (the default) is `auto`, false is `off`, or `every`."""
    value = reader.raw("layers", True)
    if isinstance(value, bool):
        return "auto" if value else "off"
    if value not in LAYER_POLICIES:  # the policy names themselves too, for a merged config
        reader.fail(
            f"unknown layers {value!r}",
            hint="true (save the states worth saving), every, or false",
            field="layers",
        )
    return str(value)


@dataclass(frozen=True)
class Share:
    """A host folder shared into the dev container."""

    source: str
    path: str


@dataclass(frozen=True)
class ContainerSettings:
    """The development container: its name, its user, the shared workspace, ssh."""

    name: str | None = None  # None: edibuild-dev-<project>
    share: Share | None = None
    user: str | None = None  # None: SUDO_USER (root only when named)
    workspace: str = DEFAULT_WORKSPACE  # absolute, or `~/...` below the user's home
    ssh: bool = True
    target: str | None = None  # the image project whose packages the target libraries match


def parse_container(reader: Reader | None) -> ContainerSettings:
    """Read the `container` section."""
    if reader is None:
        return ContainerSettings()
    reader.known(CONTAINER_KEYS)
    name = reader.optional_text("name", what="an LXD container name")
    if name is not None and not INSTANCE_NAME.fullmatch(name):
        reader.fail(
            f"{name!r} is not an LXD container name",
            hint="letters, digits and '-', starting with a letter, at most 63 characters",
            field="name",
        )
    user = reader.optional_text("user", what="a user name")
    if user is not None and not USER_NAME.fullmatch(user):
        reader.fail(
            f"{user!r} is not a user name",
            hint="lower case letters, digits, '_' and '-', starting with a letter or '_' "
            "(at most 32); leave it out to use SUDO_USER",
            field="user",
        )
    workspace = reader.text("workspace", DEFAULT_WORKSPACE, what="a folder path")
    _check_workspace(reader, workspace)
    target = reader.optional_text("target", what="a project name")
    if target is not None and not is_name(target):
        reader.fail(
            f"{target!r} is not a project name",
            hint="the name of the image project (its file name without .yml)",
            field="target",
        )
    return ContainerSettings(
        name=name,
        share=_share(reader),
        user=user,
        workspace=workspace,
        ssh=reader.boolean("ssh", True),
        target=target,
    )


def _check_workspace(reader: Reader, workspace: str) -> None:
    """An absolute path or `~/...`, without `..` (it is made and mounted as it reads)."""
    path = PurePosixPath(workspace)
    relative = workspace.startswith("~/") and len(path.parts) > 1
    if not (path.is_absolute() or relative) or ".." in path.parts or path == PurePosixPath("/"):
        reader.fail(
            f"{workspace!r} is not a workspace folder",
            hint="an absolute path, or ~/NAME for a folder in the user's home "
            f"(default {DEFAULT_WORKSPACE}); no '..'",
            field="workspace",
        )


def _share(reader: Reader) -> Share | None:
    """The optional extra shared folder."""
    if not reader.has("share"):
        return None
    part = reader.child("share")
    part.known(("source", "path"))
    source, path = part.text("source"), part.text("path")
    for field, value in (("source", source), ("path", path)):
        if not PurePosixPath(value).is_absolute():
            part.fail(
                f"{field} must be an absolute path, not {value!r}",
                hint="share: {source: /home/me/work, path: /home/edi/work}",
                field=field,
            )
    return Share(source, path)
