"""The container backend over pylxd: one LXD daemon's images, instances, profiles, network.

`connect(settings)` finds the daemon (see `edibuild.lxd.endpoints`) and returns an
`LxdBackend`, the `ContainerBackend` the stages use; nothing outside this package
imports pylxd. Importing this module costs a third of a second (pylxd): stages load
it lazily (edibuild/lazy.py), so planning and no-op runs do not.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pylxd
import requests
from pylxd import exceptions

from edibuild.errors import StageFailed
from edibuild.lxd import metadata, names, poolread
from edibuild.lxd.endpoints import INSTALL_HINT, Endpoint, find_endpoint
from edibuild.lxd.errors import NotFound, Unreachable
from edibuild.lxd.instance import LxdInstance
from edibuild.lxd.protocol import Devices, Image
from edibuild.lxd.translate import LOST_HINT, translated

REMOTE_HINT = (
    "check the address (the server listens once `lxc config set core.https_address :8443`), "
    "the client certificate (lxd.cert and lxd.key, or EDIBUILD_LXD_CERT and _KEY) and the "
    "server's certificate (lxd.verify: the path of its CA bundle, or false)"
)
PROFILE_KEYS = {"config", "devices", "description", "name"}


def connect(
    settings: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = 30,
    env: Mapping[str, str] | None = None,
) -> LxdBackend:
    """The backend for the daemon a project's `lxd` section (or the environment) names."""
    return open_endpoint(find_endpoint(settings, env), timeout)


def open_endpoint(endpoint: Endpoint, timeout: float | None = 30) -> LxdBackend:
    """The backend for the daemon at `endpoint`; Unreachable when it does not answer us."""
    hint = INSTALL_HINT if endpoint.is_local else REMOTE_HINT
    cert, session = _unverified(endpoint) if endpoint.verify is False else (endpoint.cert, None)
    try:
        client = pylxd.Client(
            endpoint=endpoint.url,
            cert=cert,
            verify=endpoint.verify,
            timeout=timeout,
            session=session,
        )
    except (exceptions.ClientConnectionFailed, requests.exceptions.RequestException) as exc:
        raise Unreachable(f"cannot reach LXD at {endpoint.url}: {exc}", hint=hint) from exc
    except exceptions.LXDAPIException as exc:  # it answers, with an error (starting, stopping)
        raise Unreachable(f"the LXD at {endpoint.url} answers: {exc}", hint=LOST_HINT) from exc
    if client.host_info.get("auth") != "trusted":
        raise Unreachable(
            f"the LXD at {endpoint.url} does not trust this client's certificate",
            hint="on the server: lxc config trust add <the client certificate>",
        )
    return LxdBackend(client, endpoint)


def _unverified(endpoint: Endpoint) -> tuple[tuple[str, str] | None, Any]:
    """The client certificate and a session for an endpoint with `verify: false`.

    requests lets REQUESTS_CA_BUNDLE (set system-wide on some hosts) override a session's
    verify=False, so this session ignores the environment; pylxd's default client
    certificate (~/.config/lxc/client.crt) is used as pylxd itself would.
    """
    cert = endpoint.cert
    default = pylxd.client.DEFAULT_CERTS
    if cert is None and os.path.exists(default.cert) and os.path.exists(default.key):
        cert = (default.cert, default.key)
    session = pylxd.client.get_session_for_url(endpoint.url, verify=False, cert=cert)
    session.trust_env = False
    return cert, session


def _image(image: Any) -> Image:
    properties = dict(getattr(image, "properties", None) or {})
    return Image(
        fingerprint=str(image.fingerprint),
        aliases=tuple(str(a["name"]) for a in image.aliases or ()),
        uploaded_at=str(getattr(image, "uploaded_at", "") or ""),
        last_used_at=str(getattr(image, "last_used_at", "") or ""),
        project=str(properties.get(names.PROJECT_LABEL, "")),
        owner=str(properties.get(names.OWNER_LABEL, "")),
    )


class LxdBackend:
    """One LXD daemon through pylxd (the `ContainerBackend` protocol)."""

    def __init__(self, client: pylxd.Client, endpoint: Endpoint) -> None:
        self._client = client
        self._endpoint = endpoint

    @property
    def endpoint(self) -> Endpoint:
        """Where the daemon answers (handed to the Ansible connection)."""
        return self._endpoint

    def architecture(self, debian_arch: str) -> str:
        """LXD's name for a Debian architecture, as this daemon can run it."""
        supported = self._client.host_info["environment"].get("architectures", [])
        return metadata.architecture(debian_arch, supported)

    # -- images ---------------------------------------------------------------------

    def images(self) -> list[Image]:
        """Every image in the daemon."""
        with translated("listing images"):
            return [_image(i) for i in self._client.images.all()]

    def image(self, fingerprint: str) -> Image | None:
        """The image with this fingerprint, or None."""
        with contextlib.suppress(NotFound), translated(f"image {fingerprint}"):
            return _image(self._client.images.get(fingerprint))
        return None

    def image_by_alias(self, alias: str) -> Image | None:
        """The image `alias` points at, or None."""
        with contextlib.suppress(NotFound), translated(f"image alias {alias}"):
            return _image(self._client.images.get_by_alias(alias))
        return None

    def import_image(self, rootfs: Path, metadata: bytes) -> str:
        """Import a rootfs tarball plus a metadata tarball; return the fingerprint."""
        with rootfs.open("rb") as data, translated(f"importing {rootfs.name}"):
            image = self._client.images.create(data, metadata=io.BytesIO(metadata))
        return str(image.fingerprint)

    def import_unified(self, tarball: Path) -> str:
        """Import a unified image tarball (metadata.yaml, rootfs/); return the fingerprint."""
        with tarball.open("rb") as data, translated(f"importing {tarball.name}"):
            image = self._client.images.create(data, wait=True)
        return str(image.fingerprint)

    def add_alias(self, fingerprint: str, alias: str, description: str = "") -> None:
        """Point a new alias at an image (Conflict when the alias exists)."""
        with translated(f"adding alias {alias}"):
            self._client.images.get(fingerprint).add_alias(alias, description)

    def remove_alias(self, alias: str) -> None:
        """Remove an alias (the image stays)."""
        with translated(f"removing alias {alias}"):
            self._client.api.images.aliases[alias].delete()

    def delete_image(self, fingerprint: str) -> None:
        """Delete an image if it is still there."""
        with contextlib.suppress(NotFound), translated(f"deleting image {fingerprint}"):
            self._client.images.get(fingerprint).delete(wait=True)

    # -- instances ------------------------------------------------------------------

    def instance(self, name: str) -> LxdInstance | None:
        """The instance called `name`, or None."""
        with contextlib.suppress(NotFound), translated(f"instance {name}"):
            return LxdInstance(self._client.instances.get(name))
        return None

    def instance_names(self, prefix: str) -> list[str]:
        """Names of the instances starting with `prefix`, sorted."""
        with translated("listing instances"):
            names = [str(i.name) for i in self._client.instances.all()]
        return sorted(n for n in names if n.startswith(prefix))

    def launch(
        self,
        name: str,
        fingerprint: str,
        *,
        profiles: Sequence[str],
        devices: Devices,
        config: Mapping[str, str],
    ) -> LxdInstance:
        """Create and start a container from an image; wait until systemd answers."""
        box = self.create(name, fingerprint, profiles=profiles, devices=devices, config=config)
        box.start()
        return box

    def create(
        self,
        name: str,
        fingerprint: str,
        *,
        profiles: Sequence[str],
        devices: Devices,
        config: Mapping[str, str],
    ) -> LxdInstance:
        """Create a container from an image without starting it."""
        spec = {
            "name": name,
            "source": {"type": "image", "fingerprint": fingerprint},
            "profiles": list(profiles),
            "devices": {k: dict(v) for k, v in devices.items()},
            "config": dict(config),
        }
        with translated(f"creating container {name}"):
            return LxdInstance(self._client.instances.create(spec, wait=True))

    def remove_instance(self, name: str) -> bool:
        """Stop and delete instance `name` if it exists; True if there was one."""
        box = self.instance(name)
        if box is None:
            return False
        box.remove()
        return True

    def build_root(self) -> Devices:
        """A root disk on edibuild's own pool (names.BUILD_POOL) when this daemon has it,
        for build containers; none otherwise (the default profile's pool then)."""
        with contextlib.suppress(NotFound), translated(f"storage pool {names.BUILD_POOL}"):
            self._client.storage_pools.get(names.BUILD_POOL)
            return {"root": {"type": "disk", "path": "/", "pool": names.BUILD_POOL}}
        return {}

    def _pool_folder(self, pool: Any) -> Path | None:
        """Where a storage pool's volumes are folders on this machine: a dir pool's source,
        a btrfs pool's mount below the daemon's folder; None for other drivers."""
        source = (pool.config or {}).get("source", "")
        if pool.driver == "dir" and source:
            return Path(source)
        if pool.driver == "btrfs":  # not visible from here for the snap (own mount space)
            return self._endpoint.socket.parent / "storage-pools" / str(pool.name)
        return None

    def local_folder(self, name: str) -> poolread.LocalFolder | None:
        """Where stopped instance `name` keeps its files on this machine (a local `dir` or
        btrfs pool), with its id map; None when the files are elsewhere or cannot be read so."""
        if not self._endpoint.is_local:
            return None
        with translated(f"looking up the storage of {name}"):
            instance = self._client.instances.get(name)
            devices = (instance.expanded_devices or {}).values()
            root = next((d for d in devices if d.get("type") == "disk" and d.get("path") == "/"),
                        None)  # fmt: skip
            if root is None or not root.get("pool"):
                return None
            pool = self._client.storage_pools.get(root["pool"])
        pool_folder = self._pool_folder(pool)
        if pool_folder is None:
            return None
        config = instance.expanded_config or {}
        privileged = str(config.get("security.privileged", "false")).lower() == "true"
        ranges = poolread.id_ranges(instance.config or {}, privileged)
        folder = pool_folder / "containers" / name
        if ranges is None or not (folder / "rootfs").is_dir():
            return None
        if not (folder / "metadata.yaml").is_file():
            return None
        if ranges != (None, None) and not poolread.unshare_maps_ranges():
            return None
        return poolread.LocalFolder(folder, *ranges)

    # -- profiles and networks --------------------------------------------------------

    def create_profile(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        """Create a profile from a profile document (config, devices, description) plus labels."""
        unknown = set(spec) - PROFILE_KEYS
        if unknown:
            raise StageFailed(
                f"LXD profile {name}: unknown keys {sorted(unknown)}",
                hint="a profile holds config, devices and description",
            )
        with translated(f"creating profile {name}"):
            self._client.profiles.create(
                name,
                config={**dict(spec.get("config") or {}), **labels},
                devices=dict(spec.get("devices") or {}),
                description=str(spec.get("description") or ""),
            )

    def delete_profiles(self, prefix: str) -> None:
        """Delete every profile whose name starts with `prefix`."""
        with translated("listing profiles"):
            profiles = [p for p in self._client.profiles.all() if p.name.startswith(prefix)]
        for profile in profiles:
            with contextlib.suppress(NotFound), translated(f"deleting profile {profile.name}"):
                profile.delete()

    def profile_configs(self, prefix: str) -> dict[str, Mapping[str, str]]:
        """The config (labels among it) of every profile whose name starts with `prefix`."""
        with translated("listing profiles"):
            return {
                str(p.name): dict(p.config or {})
                for p in self._client.profiles.all()
                if p.name.startswith(prefix)
            }

    def default_network_works(self) -> bool:
        """True when the default profile has a NIC on a managed network that is up."""
        with translated("reading the default profile"):
            devices = self._client.profiles.get("default").devices
        for device in devices.values():
            network = device.get("network") or device.get("parent")
            if device.get("type") != "nic" or not network:
                continue
            with contextlib.suppress(NotFound), translated(f"network {network}"):
                net = self._client.networks.get(network)
                if net.managed and getattr(net, "status", "Created") == "Created":
                    return True
        return False


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
