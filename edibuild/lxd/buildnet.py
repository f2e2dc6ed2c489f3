"""How a build container reaches Debian's mirror: the LXD network, or the host's apt proxy.

`lxd.network` (checked at load) says auto, default or proxy. In proxy mode edibuild's
apt proxy (edibuild/lxd/aptproxy.py) serves on the host's loopback for the block, an
LXD proxy device carries the container's 127.0.0.1:3142 to it, and apt in the container
is pointed there while the build runs (and no longer when the image is saved).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.errors import StageFailed
from edibuild.lazy import lazy_import
from edibuild.lxd import devices, mirrors
from edibuild.store.workspace import Workspace

if TYPE_CHECKING:
    from edibuild.lxd import aptproxy
    from edibuild.lxd.protocol import ContainerBackend, Devices, Instance
else:  # loaded when a build needs it, not at every doit start
    aptproxy = lazy_import("edibuild.lxd.aptproxy")


APT_PROXY_CONF = "/etc/apt/apt.conf.d/00edibuild-proxy"


@dataclass
class Network:
    """How the container reaches the mirror: the LXD network, or the host's apt proxy."""

    mode: str
    devices: Devices = field(default_factory=dict)
    server: Any = None

    def prepare(self, box: Instance) -> None:
        """Point apt in the container at the proxy (proxy mode only)."""
        if self.server is not None:
            conf = b'Acquire::http::Proxy "http://127.0.0.1:3142";\n'
            box.push(APT_PROXY_CONF, conf, mode=0o644, uid=0, gid=0)

    def unprepare(self, box: Instance) -> None:
        """Remove the proxy setting again, so the image does not carry it."""
        if self.server is not None:
            box.check(["rm", "-f", APT_PROXY_CONF], "removing the apt proxy setting")

    def stats(self) -> Json:
        """Return the proxy's cache statistics (None without proxy)."""
        if self.server is None:
            return None
        st = self.server.stats
        return {"hits": st.hits, "misses": st.misses, "refused": st.refused}


def _network_mode(backend: ContainerBackend, project: Project) -> str:
    wanted = project.lxd.network  # auto, default or proxy (checked at load)
    if wanted == "auto":
        wanted = "default" if backend.default_network_works() else "proxy"
    if wanted == "proxy" and not backend.endpoint.is_local:
        raise StageFailed(
            f"the remote LXD at {backend.endpoint.url} has no working network",
            hint="give its default profile a NIC on a managed bridge",
        )
    return str(wanted)


@contextlib.contextmanager
def network_for(backend: ContainerBackend, project: Project) -> Iterator[Network]:
    """Decide the container's network; run the apt proxy for the block if needed."""
    if _network_mode(backend, project) == "default":
        yield Network("default")
        return
    cache = aptproxy.cache_root(Workspace.from_environment().cache_dir)
    with aptproxy.serving(mirrors.proxy_hosts(project), cache) as server:
        device = devices.proxy(aptproxy.port_of(server))
        yield Network("proxy", {"edibuild-apt": device}, server)
