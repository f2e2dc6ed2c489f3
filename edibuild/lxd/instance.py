"""An LXD instance over pylxd: commands, files, start and stop, publish and export."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pylxd import exceptions

from edibuild.errors import StageFailed
from edibuild.lxd import boot, names
from edibuild.lxd.errors import BackendError, Refused
from edibuild.lxd.protocol import Executed
from edibuild.lxd.translate import translated

BUSY_TRIES = 30  # seconds a delete waits for another operation on the instance
# LXD's status code of a running operation; each wait asks for at most WAIT_SECONDS
# (under any client timeout), then asks again.
RUNNING = 103
WAIT_SECONDS = 20
# Opens the pushed input file ($1) as stdin, deletes it, runs the command.
STDIN_SCRIPT = 'exec 0<"$1" && rm -f "$1" && shift && exec "$@"'

BUSY = "is busy running"  # LXD still finishing an operation (a stop from inside, say)
BUSY_TIMEOUT = 30.0


def _patiently(what: str, action: Callable[[], object]) -> None:
    """Run an LXD request, again while LXD says the instance is busy with an operation."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            with translated(what):
                action()
            return
        except Refused as exc:
            if BUSY not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class LxdInstance:
    """A container in LXD (the `Instance` protocol over a pylxd instance)."""

    def __init__(self, instance: Any) -> None:
        self._instance = instance

    def __repr__(self) -> str:
        return f"LxdInstance({self.name!r})"

    @property
    def name(self) -> str:
        """The instance's name."""
        return str(self._instance.name)

    @property
    def config(self) -> Mapping[str, str]:
        """Its own config keys (labels among them), as LXD had them when it was looked up."""
        return dict(self._instance.config or {})

    @property
    def devices(self) -> Mapping[str, Mapping[str, str]]:
        """Its own devices (not its profiles'), as LXD had them when it was looked up."""
        return {k: dict(v) for k, v in (self._instance.devices or {}).items()}

    @property
    def status(self) -> str:
        """LXD's status word now (Running, Stopped, ...), asked afresh."""
        with translated(f"reading the state of {self.name}"):
            self._instance.sync(rollback=True)  # a plain sync keeps values set before
        return str(self._instance.status)

    def rename(self, name: str) -> None:
        """Give the stopped instance another name (LXD renames only stopped ones)."""
        _patiently(
            f"renaming {self.name} to {name}", lambda: self._instance.rename(name, wait=True)
        )

    def update(
        self,
        *,
        config: Mapping[str, str | None] | None = None,
        devices: Mapping[str, Mapping[str, str] | None] | None = None,
    ) -> None:
        """Set (or, with None, remove) config keys and devices; a running one takes them live."""
        _patiently(f"changing {self.name}", lambda: self._update(config, devices))

    def _update(
        self,
        config: Mapping[str, str | None] | None,
        devices: Mapping[str, Mapping[str, str] | None] | None,
    ) -> None:
        """Read the instance afresh, change its config and devices, write them back."""
        self._instance.sync(rollback=True)
        new_config = dict(self._instance.config or {})
        for key, value in (config or {}).items():
            if value is None:
                new_config.pop(key, None)
            else:
                new_config[key] = value
        new_devices = {k: dict(v) for k, v in (self._instance.devices or {}).items()}
        for name, device in (devices or {}).items():
            if device is None:
                new_devices.pop(name, None)
            else:
                new_devices[name] = dict(device)
        self._instance.config = new_config
        self._instance.devices = new_devices
        self._instance.save(wait=True)

    def addresses(self) -> list[str]:
        """The instance's global IPv4 addresses (none without a NIC)."""
        with translated(f"reading the addresses of {self.name}"):
            network = self._instance.state().network or {}
        found = []
        for interface, data in network.items():
            if interface == "lo":
                continue
            for address in data.get("addresses", []):
                if address.get("family") == "inet" and address.get("scope") == "global":
                    found.append(str(address["address"]))
        return found

    def execute(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Executed:
        """Run argv in the instance (as root) and wait for it.

        LXD records the output in files of the instance's log (`record-output`), read
        and deleted over plain HTTP: no websockets, threads or polling sleeps, which cost
        pylxd's own execute ~140 ms a command and could lose the output of a command that
        ended before they caught up. Input goes in as a file the command reads, deleted
        before it runs.
        """
        command = list(argv)
        if stdin is not None:
            path = f"/run/edibuild-stdin-{secrets.token_hex(8)}"
            self.push(path, stdin, mode=0o600, uid=0, gid=0)
            command = ["/bin/sh", "-c", STDIN_SCRIPT, "sh", path, *command]
        with translated(f"running {argv[0]} in {self.name}"):
            response = self._instance.api.exec.post(
                json={
                    "command": command,
                    "environment": dict(env or {}),
                    "wait-for-websocket": False,
                    "interactive": False,
                    "record-output": True,
                }
            )
            operation = self._wait(str(response.json()["operation"]))
            result = operation.get("metadata") or {}
            recorded = result.get("output") or {}
            output = {fd: self._take_log(str(url)) for fd, url in recorded.items()}
        if "return" not in result:
            raise Refused(f"running {argv[0]} in {self.name}: {operation.get('err') or 'failed'}")
        return Executed(int(result["return"]), output.get("1", b""), output.get("2", b""))

    def _wait(self, operation: str) -> dict[str, Any]:
        """Wait for an operation to end (asking LXD WAIT_SECONDS at a time); its record."""
        ident = operation.rstrip("/").rsplit("/", 1)[-1]
        while True:
            answer = self._instance.client.api.operations[ident].wait.get(
                params={"timeout": WAIT_SECONDS}
            )
            record = dict(answer.json().get("metadata") or {})
            if record.get("status_code") != RUNNING:
                return record

    def _take_log(self, url: str) -> bytes:
        """Read one recorded output file of the instance's log and delete it."""
        name = url.rsplit("/", 1)[-1]
        node = self._instance.api.logs[name]
        data = bytes(node.get(is_api=False).content)  # raw bytes, never read as an answer
        with contextlib.suppress(exceptions.LXDAPIException):
            node.delete()
        return data

    def check(self, argv: Sequence[str], what: str) -> bytes:
        """Run argv; return its stdout; raise StageFailed naming `what` when it fails."""
        code, out, err = self.execute(argv)
        if code != 0:
            text = err.decode("utf-8", "replace").strip()[-2000:]
            raise StageFailed(f"{what} failed in container {self.name} (exit {code}): {text}")
        return out

    def push(
        self,
        path: str,
        data: bytes,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """Write a file into the instance (None: LXD's defaults, 0700 root:root)."""
        with translated(f"writing {path} in {self.name}"):
            self._instance.files.put(path, data, mode=mode, uid=uid, gid=gid)

    def read(self, path: str) -> bytes:
        """Read a file from the instance (NotFound when absent)."""
        with translated(f"reading {path} in {self.name}"):
            return bytes(self._instance.files.get(path))

    def delete_file(self, path: str) -> None:
        """Delete a file in the instance."""
        with translated(f"deleting {path} in {self.name}"):
            self._instance.files.delete(path)

    def start(self) -> None:
        """Start the stopped instance and wait until systemd in it finished booting."""
        _patiently(f"starting {self.name}", lambda: self._instance.start(wait=True))
        boot.wait_for_boot(self.execute, self.name)

    def stop(self, timeout: int = 60) -> None:
        """Stop the instance cleanly, forcing it after `timeout` seconds."""
        try:
            with translated(f"stopping {self.name}"):
                self._instance.stop(timeout=timeout, wait=True)
        except Refused:
            with translated(f"stopping {self.name} by force"):
                self._instance.stop(force=True, wait=True)

    def publish(self, *, compression: str, description: str = "") -> str:
        """Publish the stopped instance as an image (without alias); return its fingerprint.

        The image is marked with the instance's project and this process (properties
        `user.edibuild.project`, `user.edibuild.owner`): one still without alias when its
        process is gone was left by a killed run, and the next run deletes it.
        """
        with translated(f"publishing {self.name}"):
            image = self._publish(compression)
        if description:
            with contextlib.suppress(Refused), translated(f"describing {image.fingerprint}"):
                # Only what `lxc image list` shows: a failure here harms nothing.
                image.properties = {**dict(image.properties or {}), "description": description}
                image.save(wait=True)
        return str(image.fingerprint)

    def image_properties(self) -> dict[str, str]:
        """The properties an image of this instance gets: its `image.*` keys, and the
        ownership marks of its project and of this process."""
        instance = self._instance
        properties = {
            key.removeprefix("image."): str(value)
            for key, value in (instance.expanded_config or instance.config or {}).items()
            if key.startswith("image.")
        }
        properties.update(names.image_marks(self.config.get(names.PROJECT_LABEL, "")))
        return properties

    def _publish(self, compression: str) -> Any:
        """POST /1.0/images from this instance, with the ownership marks as properties."""
        instance = self._instance
        data = {
            "public": False,
            "source": {"type": instance.type, "name": instance.name},
            "compression_algorithm": compression,
            "properties": self.image_properties(),
        }
        client = instance.client
        response = client.api.images.post(json=data)
        operation = client.operations.wait_for_operation(response.json()["operation"])
        return client.images.get(operation.metadata["fingerprint"])

    @contextlib.contextmanager
    def exported(self) -> Iterator[Iterator[bytes]]:
        """The stopped instance as LXD's uncompressed unified image tarball, in chunks.

        The instance is published as a temporary image (metadata.yaml, templates/,
        rootfs/) that is streamed out and deleted when the block ends; a run killed
        meanwhile leaves it marked as its own (see `publish`), for the next run to delete.
        """
        with translated(f"publishing {self.name}"):
            image = self._publish("none")
        try:
            with translated(f"exporting image {image.fingerprint}"):
                response = image.api.export.get(stream=True)
            with contextlib.closing(response):
                yield self._chunks(response, image.fingerprint)
        finally:
            # A delete that fails (LXD gone) must not hide why the export stopped: the
            # image is marked, and the project's next configure run deletes it.
            with contextlib.suppress(BackendError), translated(f"deleting {image.fingerprint}"):
                image.delete(wait=True)

    @staticmethod
    def _chunks(response: Any, fingerprint: str) -> Iterator[bytes]:
        """The body of an export response, 1 MiB at a time, errors translated."""
        with translated(f"exporting image {fingerprint}"):
            yield from response.iter_content(chunk_size=1 << 20)

    def remove(self) -> None:
        """Stop (by force) and delete the instance.

        LXD refuses to delete an instance that another operation (a stop still running,
        after a daemon restart say) holds, or that runs: a start still under way when an
        interrupt came (the status read at lookup said Stopped). The stop and the delete
        are tried again for a while.
        """
        with contextlib.suppress(Refused), translated(f"stopping {self.name}"):
            self._instance.stop(force=True, wait=True)  # refused when it is stopped
        for attempt in range(BUSY_TRIES):
            try:
                with translated(f"deleting {self.name}"):
                    self._instance.delete(wait=True)
                return
            except Refused as exc:
                text = str(exc).lower()
                if ("busy" not in text and "running" not in text) or attempt == BUSY_TRIES - 1:
                    raise
                time.sleep(1)
                with contextlib.suppress(Refused), translated(f"stopping {self.name}"):
                    self._instance.stop(force=True, wait=True)
