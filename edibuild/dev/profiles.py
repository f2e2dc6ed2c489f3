"""The project's lxd_profiles, copied into the dev container's own config and devices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edibuild.config.includes import read_layer
from edibuild.config.project import Project
from edibuild.data import Json, mapping
from edibuild.errors import StageFailed

PROFILE_KEYS = ("config", "devices", "description", "name")


def merged(
    project: Project, extra: Mapping[str, Json]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The project's LXD profiles merged into one config and one device set; `extra` (the
    playbooks' bootstrap vars) goes over the parameters when a profile is rendered."""
    merged_config: dict[str, str] = {}
    merged_devices: dict[str, dict[str, str]] = {}
    for node in project.lxd_profiles:
        variables = {**project.parameters, **node.parameters, **extra}
        spec = read_layer(node.path, variables).data
        unknown = sorted(set(spec) - set(PROFILE_KEYS))
        if unknown:
            raise StageFailed(f"LXD profile {node.path}: unknown keys {unknown}",
                              hint="a profile holds config, devices and description")  # fmt: skip
        for key, value in mapping(spec.get("config")).items():
            merged_config[str(key)] = lxd_value(value)
        for dev, device in mapping(spec.get("devices")).items():
            merged_devices[str(dev)] = {str(k): lxd_value(v) for k, v in mapping(device).items()}
    return merged_config, merged_devices


def lxd_value(value: Any) -> str:
    """LXD's config values are strings (`true`, not True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
