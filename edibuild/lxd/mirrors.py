"""Which hosts a project's mirrors name (the apt proxy forwards to those only).

Kept apart from the proxy itself (edibuild/lxd/aptproxy.py, an HTTP server): configure's
configuration slice needs the list on every doit command, the server only in a build.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from edibuild.config.project import Project


def proxy_hosts(project: Project) -> list[str]:
    """Return the hosts the apt proxy may forward to: the mirror plus `lxd.proxy_hosts`."""
    extra = [f"http://{h}/" for h in project.lxd.proxy_hosts]
    return mirror_hosts([project.bootstrap.mirror, *extra])


def mirror_hosts(urls: Iterable[str]) -> list[str]:
    """Return the host names of http:// mirror URLs (https ones cannot be proxied)."""
    hosts = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.hostname:
            hosts.append(parts.hostname)
    return sorted(set(hosts))
