"""An in-memory ContainerBackend for unit tests: images with aliases, instances with config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edibuild.lxd.endpoints import Endpoint
from edibuild.lxd.errors import Conflict, NotFound
from edibuild.lxd.protocol import Image


@dataclass
class FakeInstance:
    """An instance: a name and its config (nothing runs in it)."""

    name: str
    config: dict[str, str] = field(default_factory=dict)


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

    def add_instance(self, name: str, **config: str) -> None:
        self.instances[name] = FakeInstance(name, dict(config))

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
        if fingerprint not in self.store:
            raise NotFound(f"image {fingerprint}")
        self.instances[name] = FakeInstance(name, dict(config))
        return self.instances[name]
