"""Ports on the host's loopback: stable per name, probed free, never one another device claims.

The ssh port of a dev container is derived from its name (the same container gets the
same port on every machine), moved upward past ports in use or claimed by another
instance's proxy device (a stopped container holds no socket, but would want its port
back when started), and then stored in the container's own device config, so it stays
the same for the container's whole life.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
from collections.abc import Callable, Container

from edibuild.dev.instances import all_instances
from edibuild.errors import StageFailed
from edibuild.lxd.protocol import ContainerBackend, Instance

SSH_DEVICE = "edibuild-ssh"  # the proxy device of a dev container's ssh port
SSH_BASE, SSH_SPAN = 42200, 800  # 42200-42999
PROXY_BASE, PROXY_SPAN = 43100, 800  # the long-lived apt proxy: 43100-43899


def preferred(name: str, base: int = SSH_BASE, span: int = SSH_SPAN) -> int:
    """The port `name` would like: base + a digest of the name, within the span."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return base + digest % span


def bindable(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_free(port: int, timeout: float = 30.0) -> None:
    """Return once 127.0.0.1:port can be bound (a stopped container's listener lingers a
    moment while LXD finishes the stop); OSError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not bindable(port):
        if time.monotonic() > deadline:
            raise OSError(f"127.0.0.1:{port} is still in use after {timeout:.0f} s")
        time.sleep(0.2)


def choose(
    name: str,
    claimed: Container[int] = (),
    *,
    base: int = SSH_BASE,
    span: int = SSH_SPAN,
    free: Callable[[int], bool] = bindable,
) -> int:
    """The first port from `preferred(name)` upward (wrapping in the span) that is free."""
    start = preferred(name, base, span) - base
    for step in range(span):
        port = base + (start + step) % span
        if port not in claimed and free(port):
            return port
    raise OSError(f"no free port on 127.0.0.1 between {base} and {base + span - 1}")


def listen_port(device: object) -> int | None:
    """The host port of a proxy device listening on the host (`bind: host`), else None."""
    if not isinstance(device, dict) or device.get("type") != "proxy":
        return None
    if device.get("bind", "host") != "host":
        return None
    listen = str(device.get("listen", ""))
    _, _, port = listen.rpartition(":")
    return int(port) if listen.startswith("tcp:") and port.isdigit() else None


def claimed(backend: ContainerBackend, skip: str = "") -> set[int]:
    """Host ports every other instance's proxy devices listen on (running or not)."""
    found = set()
    for box in all_instances(backend):
        if box.name != skip:
            for device in box.devices.values():
                port = listen_port(dict(device))
                if port is not None:
                    found.add(port)
    return found


def wait_ssh_free(port: int) -> None:
    """Wait for the old container's ssh listener to let go of its port."""
    try:
        wait_free(port)
    except OSError as exc:
        raise StageFailed(
            f"the dev container's ssh port is taken: {exc}",
            hint=f"see who listens there (ss -ltnp | grep {port}) and stop it",
        ) from None


def current(box: Instance | None) -> int | None:
    """The ssh port of a container: its ssh device's (the device is where the port lives)."""
    device = None if box is None else box.devices.get(SSH_DEVICE)
    return None if device is None else listen_port(dict(device))
