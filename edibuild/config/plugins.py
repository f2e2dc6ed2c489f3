"""Resolve plugin files (playbooks, profiles, keyrings) and build the ordered node sections."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from edibuild.config.names import check_name
from edibuild.config.paths import find_inside, folder_files, plugin_folder, real
from edibuild.config.project import Node
from edibuild.config.suggest import did_you_mean, expect_mapping, expect_str
from edibuild.config.values import check_parameters
from edibuild.data import Json
from edibuild.data import mapping as as_mapping
from edibuild.errors import ConfigError, Location

NODE_SECTIONS = ("lxd_profiles", "playbooks", "postprocessing")
NODE_KEYS = ("path", "parameters", "skip")
# Sections whose nodes may carry keys that a later stage validates.
OPEN_NODE_SECTIONS = ("postprocessing",)
# Sections whose plugins may read every file of their folder (see config/paths.py).
FOLDER_SECTIONS = ("playbooks",)
_LEADING_INT = re.compile(r"^(\d+)")

Where = Callable[..., Location]


def plugin_dirs(project_dir: Path, shipped_dir: Path) -> tuple[Path, ...]:
    """Return the folders searched for plugin files, in order."""
    if real(project_dir) == real(shipped_dir):
        return (project_dir,)
    return (project_dir, shipped_dir)


def require_plugin(
    value: Json, key: str, where: Where, dirs: tuple[Path, Path], host_roots: tuple[Path, ...] = ()
) -> Path:
    """Resolve a plugin path value (inside the project or shipped folder) or raise."""
    location = where(*key.split("."))
    relative = expect_str(value, key, location, "the path of a plugin file")
    bases = plugin_dirs(*dirs)
    found = find_inside(
        relative, bases, dirs, what="plugin file", key=key, location=location,
        host_roots=host_roots,
    )  # fmt: skip
    if found is not None:
        return found
    tried = ", ".join(str(base / relative) for base in bases)
    if Path(relative).is_absolute():
        tried = relative
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
        check_name(name, "node key", location=where(section, name), key=f"{section}.{name}")
        node = _node_mapping(section, name, mapping[name], where)
        if node.get("skip", False):
            continue
        node.pop("skip", None)
        if "path" in node or section not in OPEN_NODE_SECTIONS:
            key = f"{section}.{name}.path"
            path = require_plugin(node.get("path"), key, where, dirs)
            node["path"] = str(path)
            parameters = as_mapping(node.get("parameters"))
            files: tuple[Path, ...] = ()
            folder = plugin_folder(path, dirs) if section in FOLDER_SECTIONS else None
            if folder is not None:
                files = folder_files(folder, dirs, key=key, location=where(section, name, "path"))
            nodes.append(Node(name, path, parameters, files))
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
        check_parameters(node["parameters"], where, section, name, "parameters")
    return node
