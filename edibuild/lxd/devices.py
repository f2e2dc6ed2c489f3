"""LXD device definitions edibuild attaches to instances (plain dicts, as LXD takes them)."""

from __future__ import annotations

from pathlib import Path

Device = dict[str, str]


def proxy(port: int, listen_port: int = 3142) -> Device:
    """127.0.0.1:listen_port inside the instance -> 127.0.0.1:port on the host."""
    return {
        "type": "proxy",
        "bind": "instance",
        "listen": f"tcp:127.0.0.1:{listen_port}",
        "connect": f"tcp:127.0.0.1:{port}",
    }


def disk(source: Path | str, path: str) -> Device:
    """Host folder `source` shared into the instance at `path`."""
    return {"type": "disk", "source": str(source), "path": path}
