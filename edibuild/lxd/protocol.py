"""What stages need from a container backend: the Protocols they depend on, and the values.

`edibuild.lxd.client` implements them over pylxd; a test may pass anything of the same
shape. Every method raises the typed errors of `edibuild.lxd.errors`: a lookup of
something absent returns None (or False), an unreachable daemon raises Unreachable,
an error answer Refused (NotFound, Conflict).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from edibuild.lxd.endpoints import Endpoint

if TYPE_CHECKING:  # only stages that export need it, not planning
    from edibuild.lxd.poolread import LocalFolder

Devices = Mapping[str, Mapping[str, str]]


class Executed(NamedTuple):
    """How a command in an instance ended: exit code, stdout, stderr."""

    code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Image:
    """An image in LXD: its fingerprint, alias names and when it was uploaded and last used;
    for an image a build published, its project and owner marks (edibuild/lxd/names.py)."""

    fingerprint: str
    aliases: tuple[str, ...] = ()
    uploaded_at: str = ""
    last_used_at: str = ""
    project: str = ""
    owner: str = ""


class Instance(Protocol):
    """A container in LXD, for running commands and moving files."""

    @property
    def name(self) -> str:
        """The instance's name."""

    @property
    def config(self) -> Mapping[str, str]:
        """Its own config keys (labels among them), as LXD had them when it was looked up."""

    @property
    def devices(self) -> Devices:
        """Its own devices (not its profiles'), as LXD had them when it was looked up."""

    @property
    def status(self) -> str:
        """LXD's status word now (Running, Stopped, ...), asked afresh."""

    def execute(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Executed:
        """Run argv in the instance (as root) and wait for it."""

    def check(self, argv: Sequence[str], what: str) -> bytes:
        """Run argv; return its stdout; raise StageFailed naming `what` when it fails."""

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

    def read(self, path: str) -> bytes:
        """Read a file from the instance (NotFound when absent)."""

    def delete_file(self, path: str) -> None:
        """Delete a file in the instance."""

    def start(self) -> None:
        """Start the stopped instance and wait until systemd in it finished booting."""

    def stop(self, timeout: int = 60) -> None:
        """Stop the instance cleanly, forcing it after `timeout` seconds."""

    def rename(self, name: str) -> None:
        """Give the stopped instance another name (LXD renames only stopped ones)."""

    def update(
        self,
        *,
        config: Mapping[str, str | None] | None = None,
        devices: Mapping[str, Mapping[str, str] | None] | None = None,
    ) -> None:
        """Set (or, with None, remove) config keys and devices; a running one takes them live."""

    def addresses(self) -> list[str]:
        """The instance's global IPv4 addresses (none without a NIC)."""

    def publish(self, *, compression: str, description: str = "") -> str:
        """Publish the stopped instance as an image (without alias); return its fingerprint."""

    def exported(self) -> AbstractContextManager[Iterator[bytes]]:
        """The stopped instance as LXD's uncompressed unified image tarball, in chunks."""

    def image_properties(self) -> dict[str, str]:
        """The properties an image of this instance gets (`image.*` keys, ownership marks)."""


class ContainerBackend(Protocol):
    """One LXD daemon: its images, instances, profiles and network."""

    @property
    def endpoint(self) -> Endpoint:
        """Where the daemon answers (handed to the Ansible connection)."""

    def architecture(self, debian_arch: str) -> str:
        """LXD's name for a Debian architecture, as this daemon can run it."""

    def images(self) -> list[Image]:
        """Every image in the daemon."""

    def image(self, fingerprint: str) -> Image | None:
        """The image with this fingerprint, or None."""

    def image_by_alias(self, alias: str) -> Image | None:
        """The image `alias` points at, or None."""

    def import_image(self, rootfs: Path, metadata: bytes) -> str:
        """Import a rootfs tarball plus a metadata tarball; return the fingerprint."""

    def import_unified(self, tarball: Path) -> str:
        """Import a unified image tarball (metadata.yaml, rootfs/); return the fingerprint."""

    def add_alias(self, fingerprint: str, alias: str, description: str = "") -> None:
        """Point a new alias at an image (Conflict when the alias exists)."""

    def remove_alias(self, alias: str) -> None:
        """Remove an alias (the image stays)."""

    def delete_image(self, fingerprint: str) -> None:
        """Delete an image if it is still there."""

    def instance(self, name: str) -> Instance | None:
        """The instance called `name`, or None."""

    def instance_names(self, prefix: str) -> list[str]:
        """Names of the instances starting with `prefix`, sorted."""

    def launch(
        self,
        name: str,
        fingerprint: str,
        *,
        profiles: Sequence[str],
        devices: Devices,
        config: Mapping[str, str],
    ) -> Instance:
        """Create and start a container from an image; wait until systemd answers."""

    def create(
        self,
        name: str,
        fingerprint: str,
        *,
        profiles: Sequence[str],
        devices: Devices,
        config: Mapping[str, str],
    ) -> Instance:
        """Create a container from an image without starting it."""

    def remove_instance(self, name: str) -> bool:
        """Stop and delete instance `name` if it exists; True if there was one."""

    def create_profile(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        """Create a profile from a profile document (config, devices, description) plus labels."""

    def delete_profiles(self, prefix: str) -> None:
        """Delete every profile whose name starts with `prefix`."""

    def profile_configs(self, prefix: str) -> dict[str, Mapping[str, str]]:
        """The config (labels among it) of every profile whose name starts with `prefix`."""

    def default_network_works(self) -> bool:
        """True when the default profile has a NIC on a managed network that is up."""

    def build_root(self) -> Devices:
        """The root disk device build containers get (edibuild's own pool), or none."""

    def local_folder(self, name: str) -> LocalFolder | None:
        """Where stopped instance `name` keeps its files on this machine, or None."""
