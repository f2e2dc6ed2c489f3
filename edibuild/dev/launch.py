"""One dev container build's facts: the developer, workspace, keys, network, labels, devices."""

from __future__ import annotations

import os
from pathlib import Path

from edibuild.dev import apt, identity
from edibuild.dev.instances import container_name
from edibuild.engine.stage import StageContext
from edibuild.lxd import aptproxyd, devices, names
from edibuild.lxd.protocol import ContainerBackend

BASE_LABEL = "user.edibuild.dev-base"  # what needs a new container when it changes
KEY_LABEL = "user.edibuild.dev-key"  # the stage key the container is up to date with
WORKSPACE_DEVICE = "edibuild-workspace"
SHARE_DEVICE = "share"


class Launch:
    """One build's facts: the developer, the workspace, keys, network and the labels."""

    def __init__(self, ctx: StageContext, backend: ContainerBackend) -> None:
        project = ctx.project
        self.ctx = ctx
        self.backend = backend
        self.project = project
        self.name = container_name(project)
        self.who = identity.developer(project.container)
        self.workspace = identity.workspace(project.container, self.who)
        files = tuple(sorted({*project.ssh_keys, *identity.public_keys(self.who)}))
        self.keys = identity.authorized_keys(files)
        self.mode = apt.network_mode(backend, project)
        self.proxy: tuple[Path, aptproxyd.Daemon] | None = None
        self.notes: list[str] = []

    def labels(self, base: str) -> dict[str, str]:
        labels = {**names.labels(self.project.name), BASE_LABEL: base, KEY_LABEL: self.ctx.key}
        if self.proxy is not None:
            labels[apt.PROXY_LABEL] = os.fspath(self.proxy[0])
        return labels

    def network_devices(self) -> dict[str, dict[str, str]]:
        if self.proxy is None:
            return {}
        return {apt.APT_DEVICE: devices.proxy(self.proxy[1].port, apt.APT_LISTEN)}

    def shared_devices(self) -> dict[str, dict[str, str]]:
        found = {WORKSPACE_DEVICE: devices.disk(self.workspace, self.workspace)}
        share = self.project.container.share
        if share is not None:
            found[SHARE_DEVICE] = devices.disk(share.source, share.path)
        return found

    @property
    def wants_ssh_port(self) -> bool:
        return self.project.container.ssh and self.mode == "proxy"
