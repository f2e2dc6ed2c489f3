"""LXD backend over pylxd: import images, run containers, export them.

The daemon is found by edibuild.lxd.endpoints.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pylxd
import yaml
from pylxd.exceptions import LXDAPIException as LXDAPIException
from pylxd.exceptions import NotFound as NotFound

from edibuild.errors import StageFailed
from edibuild.lxd.endpoints import Endpoint, find_endpoint

# Debian architecture -> LXD architecture name.
ARCHITECTURES: Mapping[str, str] = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "armhf": "armv7l",
    "armel": "armv6l",
    "i386": "i686",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def open_client(endpoint: Endpoint, timeout: float | None = 30) -> pylxd.Client:
    """Open a pylxd client for `endpoint`."""
    return pylxd.Client(
        endpoint=endpoint.url, cert=endpoint.cert, verify=endpoint.verify, timeout=timeout
    )


def connect(
    settings: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = 30,
    env: Mapping[str, str] | None = None,
) -> pylxd.Client:
    """Return a client for the LXD daemon the project uses (see `find_endpoint`)."""
    return open_client(find_endpoint(settings, env), timeout)


def lxd_architecture(client: pylxd.Client, debian_arch: str) -> str:
    """Map a Debian architecture to LXD's name; use the host's when LXD cannot run it.

    A foreign rootfs (arm64 on x86_64) runs through qemu-user binfmt, which LXD does not
    know about, so such images are labelled with the server's own architecture.
    """
    wanted = ARCHITECTURES.get(debian_arch, debian_arch)
    supported = client.host_info["environment"].get("architectures", [])
    return wanted if wanted in supported or not supported else str(supported[0])


def metadata_tarball(architecture: str, epoch: int, properties: Mapping[str, str]) -> bytes:
    """Return an LXD image metadata tarball (metadata.yaml only), reproducibly."""
    meta = {"architecture": architecture, "creation_date": epoch, "properties": dict(properties)}
    data = yaml.safe_dump(meta, sort_keys=True).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size, info.mtime, info.mode = len(data), epoch, 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_by_alias(client: pylxd.Client, alias: str) -> Any | None:
    """Return the image with `alias`, or None."""
    try:
        return client.images.get_by_alias(alias)
    except NotFound:
        return None


def image_exists(client: pylxd.Client, fingerprint: str) -> bool:
    """True when an image with this fingerprint is in LXD."""
    return bool(client.images.exists(fingerprint))


def import_image(
    client: pylxd.Client, rootfs: Path, metadata: bytes, alias: str, description: str
) -> str:
    """Import a rootfs tarball plus metadata as an image named `alias`; return its fingerprint."""
    with rootfs.open("rb") as data:
        image = client.images.create(data, metadata=io.BytesIO(metadata))
    try:
        image.add_alias(alias, description)
    except LXDAPIException:
        # Another build imported the same key at the same time: keep theirs.
        existing = image_by_alias(client, alias)
        if existing is None:
            raise
        return str(existing.fingerprint)
    return str(image.fingerprint)


def delete_image(client: pylxd.Client, fingerprint: str) -> None:
    """Delete an image if it is still there."""
    with contextlib.suppress(NotFound):
        client.images.get(fingerprint).delete(wait=True)


def _quiet_websocket_manager(args: threading.ExceptHookArgs) -> None:
    """Drop the traceback of pylxd's ws4py thread tripping over its closed poller.

    ws4py's WebSocketManager raises `ValueError: I/O operation on closed epoll object`
    when an exec's websockets close; the command's result is complete by then, so the
    traceback on the user's console says nothing. Every other exception is shown.
    """
    thread = args.thread
    if thread is not None and thread.name == "WebSocketManager" and args.exc_type is ValueError:
        return
    _previous_excepthook(args)


_previous_excepthook = threading.excepthook
threading.excepthook = _quiet_websocket_manager


@dataclass
class Container:
    """A running container that edibuild created and will remove."""

    client: pylxd.Client
    name: str
    instance: Any = field(repr=False, default=None)

    def execute(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Run argv in the container; return (exit code, stdout, stderr)."""
        result = self.instance.execute(
            list(argv),
            environment=dict(env or {}),
            decode=False,
            stdin_payload=stdin,
        )
        return int(result.exit_code), bytes(result.stdout), bytes(result.stderr)

    def check(self, argv: Sequence[str], what: str) -> bytes:
        """Run argv in the container and raise StageFailed naming `what` if it fails."""
        code, out, err = self.execute(argv)
        if code != 0:
            text = err.decode("utf-8", "replace").strip()[-2000:]
            raise StageFailed(f"{what} failed in container {self.name} (exit {code}): {text}")
        return out

    def push(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a file into the container."""
        self.instance.files.put(path, data, mode=mode, uid=0, gid=0)

    def pull(self, path: str) -> bytes:
        """Read a file from the container."""
        return bytes(self.instance.files.get(path))


def launch(
    client: pylxd.Client,
    name: str,
    fingerprint: str,
    profiles: Sequence[str],
    devices: Mapping[str, Mapping[str, str]],
    config: Mapping[str, str],
) -> Container:
    """Create and start container `name` from an image; wait until systemd answers."""
    spec = {
        "name": name,
        "source": {"type": "image", "fingerprint": fingerprint},
        "profiles": list(profiles),
        "devices": dict(devices),
        "config": dict(config),
    }
    instance = client.instances.create(spec, wait=True)
    box = Container(client, name, instance)
    instance.start(wait=True)
    _wait_for_boot(box)
    return box


def start(box: Container) -> None:
    """Start a stopped container again; wait until systemd answers."""
    box.instance.start(wait=True)
    _wait_for_boot(box)


BOOTED = ("running", "degraded", "maintenance")


def _wait_for_boot(box: Container, timeout: float = 120) -> None:
    """Wait until systemd in the container finished booting, or waits only for devices.

    A container never gets the block devices of the image's fstab (the data partition,
    the boot partition), so systemd would wait 90 s for each before calling the boot
    finished; twice in a row nothing but device jobs running counts as booted.
    """
    deadline = time.monotonic() + timeout
    stuck = 0
    while time.monotonic() < deadline:
        code, out, _ = box.execute(["systemctl", "is-system-running"])
        state = out.decode().strip()
        if state in BOOTED or code == 127:  # 127: no systemctl, nothing to wait for
            return
        stuck = stuck + 1 if state == "starting" and _only_devices_running(box) else 0
        if stuck >= 2:
            return
        time.sleep(0.5)
    raise StageFailed(f"container {box.name} did not finish booting within {timeout:.0f} s")


def _only_devices_running(box: Container) -> bool:
    """True when every running systemd job waits for a device (which never comes here)."""
    code, out, _ = box.execute(["systemctl", "list-jobs", "--no-legend", "--plain"])
    running = [
        fields[1]
        for fields in (line.split() for line in out.decode().splitlines())
        if len(fields) >= 4 and fields[3] == "running"
    ]
    return code == 0 and bool(running) and all(unit.endswith(".device") for unit in running)


def remove_container(client: pylxd.Client, name: str) -> bool:
    """Stop and delete container `name` if it exists; True if there was one."""
    try:
        instance = client.instances.get(name)
    except NotFound:
        return False
    if instance.status != "Stopped":
        with contextlib.suppress(LXDAPIException):
            instance.stop(force=True, wait=True)
    instance.delete(wait=True)
    return True


def containers_with_prefix(client: pylxd.Client, prefix: str) -> list[str]:
    """Return names of containers starting with `prefix`."""
    return sorted(i.name for i in client.instances.all() if i.name.startswith(prefix))


def stop(box: Container, timeout: int = 60) -> None:
    """Stop the container cleanly, forcing it after `timeout` seconds."""
    try:
        box.instance.stop(timeout=timeout, wait=True)
    except LXDAPIException:
        box.instance.stop(force=True, wait=True)


def export_rootfs(box: Container, target: Path) -> None:
    """Publish the stopped container as a temporary image and stream it to `target`.

    The file is LXD's unified image tarball (metadata.yaml, templates/, rootfs/),
    uncompressed; the temporary image is deleted again at once.
    """
    image = box.instance.publish(wait=True, compression_algorithm="none")
    try:
        response = image.api.export.get(stream=True)
        with contextlib.closing(response), target.open("wb") as out:
            for chunk in response.iter_content(chunk_size=1 << 20):
                out.write(chunk)
    finally:
        delete_image(box.client, image.fingerprint)


@contextlib.contextmanager
def removed_afterwards(client: pylxd.Client, name: str) -> Iterator[None]:
    """Remove container `name` when the block ends, however it ends."""
    try:
        yield
    finally:
        remove_container(client, name)


def create_profile(
    client: pylxd.Client, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]
) -> None:
    """Create LXD profile `name` from a profile document (config, devices, description)."""
    unknown = set(spec) - {"config", "devices", "description", "name"}
    if unknown:
        raise StageFailed(
            f"LXD profile {name}: unknown keys {sorted(unknown)}",
            hint="a profile holds config, devices and description",
        )
    client.profiles.create(
        name,
        config={**dict(spec.get("config") or {}), **labels},
        devices=dict(spec.get("devices") or {}),
        description=str(spec.get("description") or ""),
    )


def delete_profiles(client: pylxd.Client, prefix: str) -> None:
    """Delete every LXD profile whose name starts with `prefix`."""
    for profile in client.profiles.all():
        if profile.name.startswith(prefix):
            with contextlib.suppress(NotFound):
                profile.delete()


def default_network_works(client: pylxd.Client) -> bool:
    """True when the default profile has a NIC on a managed network that is up."""
    devices = client.profiles.get("default").devices
    for device in devices.values():
        if device.get("type") != "nic":
            continue
        network = device.get("network") or device.get("parent")
        if not network:
            continue
        try:
            net = client.networks.get(network)
        except NotFound:
            continue
        if net.managed and getattr(net, "status", "Created") == "Created":
            return True
    return False


def proxy_device(port: int, listen_port: int = 3142) -> dict[str, str]:
    """Return a proxy device: 127.0.0.1:listen_port inside -> 127.0.0.1:port on the host."""
    return {
        "type": "proxy",
        "bind": "instance",
        "listen": f"tcp:127.0.0.1:{listen_port}",
        "connect": f"tcp:127.0.0.1:{port}",
    }
