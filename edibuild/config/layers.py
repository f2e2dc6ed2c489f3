"""Read the files of one project: the project file, its includes (depth first) and overlays."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edibuild.config.host import Host
from edibuild.config.render import render
from edibuild.config.suggest import expect_str_list
from edibuild.config.yamlpos import Layer, parse
from edibuild.errors import ConfigError, Location
from edibuild.project import Json

OVERLAY_DIR = "overlays"


def read_layer(file: Path, variables: Mapping[str, Json]) -> Layer:
    """Render one file with Jinja2 and parse it as YAML with key locations."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"cannot read the file: {error}",
            location=Location(file),
            hint="check that it exists, is readable and is UTF-8 text",
        ) from None
    return parse(render(text, file, variables), file)


def overlay_files(projects_dir: Path, host: Host) -> tuple[Path, ...]:
    """Return the local overlays that exist, in merge order: global, host, user."""
    folder = projects_dir / OVERLAY_DIR
    names = ("global.yml", f"host-{host.hostname}.yml", f"user-{host.user}.yml")
    return tuple(folder / name for name in names if (folder / name).is_file())


def read_overlays(projects_dir: Path, host: Host, builtins: Mapping[str, Json]) -> list[Layer]:
    """Read the local overlays; they may set parameters and sections but not `include`."""
    layers = [read_layer(file, builtins) for file in overlay_files(projects_dir, host)]
    for layer in layers:
        if "include" in layer.data:
            raise ConfigError(
                "overlays cannot include other files",
                location=layer.where("include"),
                key="include",
                hint="set the values directly in the overlay",
            )
    return layers


def expand_includes(
    layer: Layer, variables: Mapping[str, Json], shipped_dir: Path, stack: tuple[Path, ...]
) -> list[Layer]:
    """Return the layers `layer` includes, each after its own includes (depth first)."""
    result: list[Layer] = []
    entries = expect_str_list(
        layer.data.get("include", []), "include", layer.where("include"), "file names"
    )
    for index, entry in enumerate(entries):
        location = layer.where("include", str(index))
        file = _find_include(entry, layer.file.parent, shipped_dir, location)
        if file in stack:
            chain = " -> ".join(str(path) for path in (*stack, file))
            raise ConfigError(
                f"include cycle: {chain}",
                location=location,
                key="include",
                hint="remove one of these includes",
            )
        included = read_layer(file, variables)
        if "parameters" in included.data:
            raise ConfigError(
                "included files cannot set parameters (they are rendered with them)",
                location=included.where("parameters"),
                key="parameters",
                hint="set parameters in the project file or an overlay; in an included file "
                "give defaults with {{ name | default('value') }}",
            )
        result.extend(expand_includes(included, variables, shipped_dir, (*stack, file)))
        result.append(included)
    return result


def _find_include(entry: str, folder: Path, shipped_dir: Path, location: Location) -> Path:
    """Find an include beside the including file first, then in edibuild's projects/."""
    candidates = (folder / entry, shipped_dir / entry)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise ConfigError(
        f"included file {entry!r} not found; tried: {tried}",
        location=location,
        key="include",
        hint="paths are relative to the including file, then to edibuild's projects/ folder",
    )
