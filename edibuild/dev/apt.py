"""The dev containers' network: the LXD bridge, or the long-lived apt proxy on the host."""

from __future__ import annotations

import os
from pathlib import Path

from edibuild.config.project import Project
from edibuild.dev import ports
from edibuild.dev.instances import all_instances
from edibuild.lxd import aptproxyd, names
from edibuild.lxd.protocol import ContainerBackend
from edibuild.run import run, say
from edibuild.store.workspace import Workspace

PROXY_LABEL = "user.edibuild.apt-proxy"  # the state folder of the apt proxy it uses
APT_DEVICE = "edibuild-apt"
APT_LISTEN = 3142


def network_mode(backend: ContainerBackend, project: Project) -> str:
    """`default` (the profile's NIC on a working bridge) or `proxy` (this machine's way)."""
    wanted = project.lxd.network
    if wanted == "auto":
        wanted = "default" if backend.default_network_works() else "proxy"
    return wanted


def apt_proxy(hosts: list[str]) -> tuple[Path, aptproxyd.Daemon]:
    """The long-lived apt proxy of this workspace's cache (forwarding to `hosts`), started
    if needed."""
    cache = Workspace.from_environment().cache_dir
    state = aptproxyd.state_dir(cache)

    def choose(seed: str) -> int:
        return ports.choose(seed, base=ports.PROXY_BASE, span=ports.PROXY_SPAN)

    def start(argv: list[str], log: Path) -> None:
        # Not the build's: it serves the dev containers after this build ends, so the next
        # build's clean-up of ended builds' processes (edibuild/orphans.py) leaves it alone.
        run(argv, log=log, owned=False)

    daemon = aptproxyd.ensure(state, aptproxy_cache(cache), hosts, choose_port=choose, start=start)
    if daemon.started:
        say(f"container: started the apt proxy on 127.0.0.1:{daemon.port} (pid {daemon.pid}, "
            f"log {state / 'log'})")  # fmt: skip
    return state, daemon


def aptproxy_cache(cache: Path) -> Path:
    """Where the apt proxy keeps downloads (shared with configure's proxy)."""
    from edibuild.lxd import aptproxy

    return aptproxy.cache_root(cache)


def stop_unused(backend: ContainerBackend) -> bool:
    """Stop the apt proxy when no dev container uses it; True if it was stopped."""
    state = aptproxyd.state_dir(Workspace.from_environment().cache_dir)
    users = [
        box.name
        for box in all_instances(backend)
        if box.config.get(PROXY_LABEL) == os.fspath(state) and names.PROJECT_LABEL in box.config
    ]
    return not users and aptproxyd.stop(state)
