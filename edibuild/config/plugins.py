"""Resolve plugin files (playbooks, profiles, keyrings) and build the ordered node sections."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from edibuild.config.suggest import did_you_mean, expect_mapping, expect_str
from edibuild.errors import ConfigError, Location
from edibuild.project import Json, Node

NODE_SECTIONS = ("lxd_profiles", "playbooks", "postprocessing")
NODE_KEYS = ("path", "parameters", "skip")
# Sections whose nodes may carry keys that a later stage validates.
OPEN_NODE_SECTIONS = ("postprocessing",)
_LEADING_INT = re.compile(r"^(\d+)")

Where = Callable[..., Location]


def resolve_plugin(relative: str, project_dir: Path, shipped_dir: Path) -> Path | None:
    """Find a plugin file beside the project first, then in edibuild's shipped projects."""
    for base in plugin_dirs(project_dir, shipped_dir):
        candidate = base / relative
        if candidate.is_file():
            return candidate.resolve()
    return None


def plugin_dirs(project_dir: Path, shipped_dir: Path) -> tuple[Path, ...]:
    """Return the folders searched for plugin files, in order."""
    if project_dir.resolve() == shipped_dir.resolve():
        return (project_dir,)
    return (project_dir, shipped_dir)


def require_plugin(value: Json, key: str, where: Where, dirs: tuple[Path, Path]) -> Path:
    """Resolve a plugin path value or raise a ConfigError listing the places tried."""
    location = where(*key.split("."))
    relative = expect_str(value, key, location, "the path of a plugin file")
    found = resolve_plugin(relative, *dirs)
    if found is not None:
        return found
    tried = ", ".join(str(base / relative) for base in plugin_dirs(*dirs))
    raise ConfigError(
        f"plugin file {relative!r} not found; tried: {tried}",
        location=location,
        key=key,
        hint="fix the path (relative to the project's folder or to edibuild's projects/)",
    )


def sort_key(name: str) -> tuple[int, str]:
    """Order nodes by their leading integer (100_base before 200_x), then by name."""
    match = _LEADING_INT.match(name)
    return (int(match.group(1)) if match else 0, name)


def node_section(
    section: str, value: Json, where: Where, dirs: tuple[Path, Path]
) -> tuple[dict[str, Json], tuple[Node, ...]]:
    """Validate a node section: drop skipped nodes, sort, resolve paths; return data and nodes."""
    mapping = expect_mapping(value, section, where(section))
    data: dict[str, Json] = {}
    nodes: list[Node] = []
    for name in sorted(mapping, key=sort_key):
        node = _node_mapping(section, name, mapping[name], where)
        if node.get("skip", False):
            continue
        node.pop("skip", None)
        if "path" in node or section not in OPEN_NODE_SECTIONS:
            path = require_plugin(node.get("path"), f"{section}.{name}.path", where, dirs)
            node["path"] = str(path)
            parameters = node.get("parameters", {})
            nodes.append(Node(name, path, parameters))
        data[name] = node
    return data, tuple(nodes)


def _node_mapping(section: str, name: str, value: Json, where: Where) -> dict[str, Json]:
    """Check one node's keys and types; return a copy that may be edited."""
    key = f"{section}.{name}"
    node = dict(expect_mapping(value, key, where(section, name)))
    if section not in OPEN_NODE_SECTIONS:
        for unknown in sorted(set(node) - set(NODE_KEYS)):
            raise ConfigError(
                f"unknown key {unknown!r} in node {name!r}",
                location=where(section, name, unknown),
                key=f"{key}.{unknown}",
                hint=did_you_mean(unknown, NODE_KEYS),
            )
    if not isinstance(node.get("skip", False), bool):
        raise ConfigError(
            "skip must be true or false",
            location=where(section, name, "skip"),
            key=f"{key}.skip",
            hint="write `skip: true` to switch an inherited node off",
        )
    if "parameters" in node:
        expect_mapping(node["parameters"], f"{key}.parameters", where(section, name, "parameters"))
    return node
