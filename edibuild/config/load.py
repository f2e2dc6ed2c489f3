"""Load project files into validated, frozen Project objects."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edibuild.config.host import BUILTIN_PREFIX, Host
from edibuild.config.includes import expand_includes, read_layer, read_overlays
from edibuild.config.merge import deep_merge, merge_layers
from edibuild.config.names import check_name
from edibuild.config.paths import folder_files, real, remembering
from edibuild.config.plugins import NODE_SECTIONS, node_section
from edibuild.config.project import Node, Project
from edibuild.config.render import remembering as rendering_through
from edibuild.config.sections import parse_sections
from edibuild.config.suggest import expect_mapping
from edibuild.config.validate import (
    TOP_LEVEL_KEYS,
    bootstrap,
    check_description,
    check_top_level,
)
from edibuild.config.values import check_parameters
from edibuild.config.yamlpos import KeyPath, Layer
from edibuild.data import Json, mapping
from edibuild.errors import ConfigError, Location

if TYPE_CHECKING:
    from edibuild.config.rendermemo import RenderMemo

SSH_KEYS_DIR = "ssh_pub_keys"


def load_project(path: Path, *, shipped_dir: Path, host: Host | None = None) -> Project:
    """Render, merge and validate one project file (the project name is the file stem)."""
    check_name(
        path.stem if path.suffix == ".yml" else path.name,
        "project name (the file name without .yml)",
        location=Location(path),
        key=None,
    )
    file = real(path)
    if not file.is_relative_to(real(path.parent)):
        raise ConfigError(
            f"the project file is a symlink leading outside its folder ({file})",
            location=Location(path),
            hint=f"copy the file into {path.parent}, or point EDIBUILD_PROJECTS at its folder",
        )
    file = real(path.parent) / path.name  # the name is the project's, not the target's
    shipped = real(shipped_dir)
    host = host or Host.detect()
    builtins = host.builtins(file)
    own = read_layer(file, builtins)
    overlays = read_overlays(file.parent, host, builtins)
    parameters = _parameters([own, *overlays], builtins)
    roots = (file.parent, shipped)
    includes = expand_includes(own, {**builtins, **parameters}, roots, (real(file),))
    data, locations = merge_layers([*includes, own, *overlays])
    data.pop("include", None)
    return _project(file, shipped, data, locations, parameters)


def project_files(projects_dir: Path) -> list[Path]:
    """The project files: projects_dir/*.yml (not subfolders), sorted by name."""
    return sorted(projects_dir.glob("*.yml"), key=lambda file: file.stem)


def load_projects(
    projects_dir: Path,
    *,
    shipped_dir: Path,
    host: Host | None = None,
    only: Collection[str] | None = None,
    memo: RenderMemo | None = None,
) -> tuple[Project, ...]:
    """Load every projects_dir/*.yml (not subfolders), sorted by name; with `only`, the
    projects of those names only; with `memo`, what was rendered before is not again."""
    host = host or Host.detect()
    files = project_files(projects_dir)
    if only is not None:
        files = [file for file in files if file.stem in only]
    # The projects share plugins: resolve and list each once.
    with remembering(), rendering_through(memo):
        return tuple(load_project(file, shipped_dir=shipped_dir, host=host) for file in files)


def _parameters(layers: list[Layer], builtins: Mapping[str, Json]) -> dict[str, Json]:
    """Merge the `parameters` of the project file and the overlays; built-ins are reserved."""
    merged: dict[str, Json] = {}
    for layer in layers:
        value = layer.data.get("parameters", {})
        merged = deep_merge(merged, expect_mapping(value, "parameters", layer.where("parameters")))
        for name in merged:
            if name in builtins or name.startswith(BUILTIN_PREFIX):
                raise ConfigError(
                    f"parameter {name!r} uses the reserved prefix {BUILTIN_PREFIX!r}",
                    location=layer.where("parameters", name),
                    key=f"parameters.{name}",
                    hint=f"the built-in variables are {', '.join(sorted(builtins))}; rename it",
                )
    return merged


def _project(
    file: Path,
    shipped: Path,
    data: dict[str, Json],
    locations: dict[KeyPath, Location],
    parameters: dict[str, Json],
) -> Project:
    """Validate merged data and build the frozen Project."""

    def where(*keys: str) -> Location:
        for end in range(len(keys), 0, -1):
            found = locations.get(tuple(keys[:end]))
            if found is not None:
                return found
        return Location(file)

    check_top_level(data, where)
    check_parameters(parameters, where, "parameters")
    dirs = (file.parent, shipped)
    nodes: dict[str, tuple[Node, ...]] = {}
    for section in NODE_SECTIONS:
        if section in data:
            data[section], nodes[section] = node_section(section, data[section], where, dirs)
    boot = bootstrap(data.get("bootstrap"), where, dirs)
    if boot.keyring is not None:
        data["bootstrap"] = {**mapping(data["bootstrap"]), "keyring": str(boot.keyring)}
    prefixes = {(section,) for section in NODE_SECTIONS}
    kept = {p: loc for p, loc in locations.items() if p[:1] not in prefixes or _alive(data, p)}
    return Project(
        name=file.stem,
        file=file,
        description=check_description(data.get("description"), where, file.stem),
        parameters=parameters,
        bootstrap=boot,
        lxd_profiles=nodes.get("lxd_profiles", ()),
        playbooks=nodes.get("playbooks", ()),
        sections=_ordered(data),
        locations=kept,
        ssh_keys=_ssh_keys(file.parent, dirs),
        **parse_sections(data, where, boot.architecture),
    )


def _ssh_keys(project_dir: Path, dirs: tuple[Path, Path]) -> tuple[Path, ...]:
    """The files of the project folder's ssh_pub_keys/ (every playbook may read them)."""
    folder = project_dir / SSH_KEYS_DIR
    return folder_files(folder, dirs, key=SSH_KEYS_DIR, location=Location(folder))


def _ordered(data: dict[str, Json]) -> dict[str, Json]:
    """Return the sections in the documented order (stable `config:NAME` output)."""
    return {key: data[key] for key in TOP_LEVEL_KEYS if key in data}


def _alive(data: Json, path: KeyPath) -> bool:
    """Say whether a key path still exists (skipped nodes are gone)."""
    for key in path:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            return False
    return True
