"""An in-memory ContainerBackend for unit tests: images with aliases, instances with config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edibuild.lxd.endpoints import Endpoint
from edibuild.lxd.errors import Conflict, NotFound, Refused
from edibuild.lxd.protocol import Image


@dataclass
class FakeInstance:
    """An instance: a name, config, devices and a status (nothing runs in it).

    `fail_on` names methods that raise Refused (to test what a failure leaves behind);
    renames go through `backend` so the instance is found under its new name.
    """

    name: str
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    status: str = "Stopped"
    backend: FakeBackend | None = field(default=None, repr=False, compare=False)
    fail_on: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if what in self.fail_on:
            raise Refused(f"{self.name}: {what} failed on purpose")

    def start(self) -> None:
        self._call("start")
        self.status = "Running"

    def stop(self, timeout: int = 60) -> None:
        self._call("stop")
        self.status = "Stopped"

    def rename(self, name: str) -> None:
        self._call("rename")
        if self.status != "Stopped":
            raise Refused("Renaming of running container not allowed")
        assert self.backend is not None
        if name in self.backend.instances:
            raise Conflict(f"{name} exists")
        del self.backend.instances[self.name]
        self.name = name
        self.backend.instances[name] = self

    def update(
        self,
        *,
        config: Mapping[str, str | None] | None = None,
        devices: Mapping[str, Mapping[str, str] | None] | None = None,
    ) -> None:
        self._call("update")
        for key, value in (config or {}).items():
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value
        for name, device in (devices or {}).items():
            if device is None:
                self.devices.pop(name, None)
            else:
                self.devices[name] = dict(device)


@dataclass
class FakeBackend:
    """Images, instances and profiles in dicts; methods as the ContainerBackend protocol."""

    endpoint: Endpoint = field(default_factory=lambda: Endpoint("/fake/unix.socket"))
    store: dict[str, Image] = field(default_factory=dict)
    instances: dict[str, FakeInstance] = field(default_factory=dict)
    profiles: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def add_image(self, alias: str, uploaded_at: str = "2026-01-01T00:00:00Z") -> Image:
        fingerprint = f"fp{len(self.store)}-{alias}"
        self.store[fingerprint] = Image(fingerprint, (alias,), uploaded_at)
        return self.store[fingerprint]

    def aliases(self) -> list[str]:
        return sorted(a for image in self.store.values() for a in image.aliases)

    def images(self) -> list[Image]:
        return list(self.store.values())

    def image(self, fingerprint: str) -> Image | None:
        return self.store.get(fingerprint)

    def image_by_alias(self, alias: str) -> Image | None:
        return next((i for i in self.store.values() if alias in i.aliases), None)

    def add_alias(self, fingerprint: str, alias: str, description: str = "") -> None:
        if self.image_by_alias(alias) is not None:
            raise Conflict(f"alias {alias} exists")
        image = self.store[fingerprint]
        self.store[fingerprint] = replace(image, aliases=(*image.aliases, alias))

    def remove_alias(self, alias: str) -> None:
        image = self.image_by_alias(alias)
        if image is None:
            raise NotFound(alias)
        self.store[image.fingerprint] = replace(
            image, aliases=tuple(a for a in image.aliases if a != alias)
        )

    def delete_image(self, fingerprint: str) -> None:
        self.store.pop(fingerprint, None)

    def instance(self, name: str) -> FakeInstance | None:
        return self.instances.get(name)

    def instance_names(self, prefix: str) -> list[str]:
        return sorted(n for n in self.instances if n.startswith(prefix))

    def add_instance(self, name: str, **config: str) -> FakeInstance:
        self.instances[name] = FakeInstance(name, dict(config), backend=self)
        return self.instances[name]

    def remove_instance(self, name: str) -> bool:
        return self.instances.pop(name, None) is not None

    def create_profile(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        self.profiles[name] = {**spec, "config": {**dict(spec.get("config") or {}), **labels}}

    def delete_profiles(self, prefix: str) -> None:
        for name in [n for n in self.profiles if n.startswith(prefix)]:
            del self.profiles[name]

    def profile_configs(self, prefix: str) -> dict[str, Mapping[str, str]]:
        return {
            name: dict(spec.get("config") or {})
            for name, spec in self.profiles.items()
            if name.startswith(prefix)
        }

    def launch(
        self,
        name: str,
        fingerprint: str,
        *,
        profiles: Sequence[str],
        devices: Mapping[str, Mapping[str, str]],
        config: Mapping[str, str],
    ) -> FakeInstance:
        box = self.create(name, fingerprint, profiles=profiles, devices=devices, config=config)
        box.start()
        return box

    def create(
        self,
        name: str,
        fingerprint: str,
        *,
        profiles: Sequence[str],
        devices: Mapping[str, Mapping[str, str]],
        config: Mapping[str, str],
    ) -> FakeInstance:
        if fingerprint not in self.store:
            raise NotFound(f"image {fingerprint}")
        if name in self.instances:
            raise Conflict(f"{name} exists")
        box = FakeInstance(name, dict(config), {k: dict(v) for k, v in devices.items()})
        box.backend = self
        self.instances[name] = box
        return box
