"""Which hosts a project's mirrors name (the apt proxy forwards to those only).

Kept apart from the proxy itself (edibuild/lxd/aptproxy.py, an HTTP server): configure's
configuration slice needs the list on every doit command, the server only in a build.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def mirror_hosts(urls: Iterable[str]) -> list[str]:
    """Return the host names of http:// mirror URLs (https ones cannot be proxied)."""
    hosts = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.hostname:
            hosts.append(parts.hostname)
    return sorted(set(hosts))
