"""Read the files of one project: the project file, its includes (depth first) and overlays."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edibuild.config.host import Host
from edibuild.config.paths import find_inside, real
from edibuild.config.render import render
from edibuild.config.suggest import expect_str_list
from edibuild.config.yamlpos import Layer, parse
from edibuild.data import Json
from edibuild.errors import ConfigError, Location

OVERLAY_DIR = "overlays"
MAX_FILE_BYTES = 1024 * 1024  # a project file, include, overlay or LXD profile


def read_layer(file: Path, variables: Mapping[str, Json]) -> Layer:
    """Render one file with Jinja2 and parse it as YAML with key locations."""
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"cannot read the file: {error}",
            location=Location(file),
            hint="check that it exists, is readable and is UTF-8 text",
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_FILE_BYTES // 1024} KiB",
            location=Location(file),
            hint="a configuration file is a few KiB; split it into includes",
        )
    return parse(render(text, file, variables), file)


def overlay_files(projects_dir: Path, host: Host) -> tuple[Path, ...]:
    """Return the local overlays that exist, in merge order: global, host, user."""
    folder = projects_dir / OVERLAY_DIR
    names = ("global.yml", f"host-{host.hostname}.yml", f"user-{host.user}.yml")
    return tuple(folder / name for name in names if (folder / name).is_file())


def read_overlays(projects_dir: Path, host: Host, builtins: Mapping[str, Json]) -> list[Layer]:
    """Read the local overlays; they may set parameters and sections but not `include`."""
    files = overlay_files(projects_dir, host)
    for file in files:
        if not real(file).is_relative_to(real(projects_dir)):
            raise ConfigError(
                f"the overlay is a symlink leading outside the projects folder ({file.resolve()})",
                location=Location(file),
                hint=f"copy the file into {projects_dir / OVERLAY_DIR}",
            )
    layers = [read_layer(file, builtins) for file in files]
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
    layer: Layer, variables: Mapping[str, Json], roots: tuple[Path, Path], stack: tuple[Path, ...]
) -> list[Layer]:
    """Return the layers `layer` includes, each after its own includes (depth first).

    `roots` are the project's folder and edibuild's shipped projects folder: includes are
    looked up beside the including file, then in the shipped folder, and must resolve
    inside one of the roots.
    """
    result: list[Layer] = []
    entries = expect_str_list(
        layer.data.get("include", []), "include", layer.where("include"), "file names"
    )
    for index, entry in enumerate(entries):
        location = layer.where("include", str(index))
        file = _find_include(entry, layer.file.parent, roots, location)
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
        result.extend(expand_includes(included, variables, roots, (*stack, file)))
        result.append(included)
    return result


def _find_include(entry: str, folder: Path, roots: tuple[Path, Path], location: Location) -> Path:
    """Find an include beside the including file first, then in edibuild's projects/."""
    candidates = (folder, roots[1])
    found = find_inside(
        entry, candidates, roots, what="included file", key="include", location=location
    )
    if found is not None:
        return found
    tried = ", ".join(dict.fromkeys(str(base / entry) for base in candidates))
    raise ConfigError(
        f"included file {entry!r} not found; tried: {tried}",
        location=location,
        key="include",
        hint="paths are relative to the including file, then to edibuild's projects/ folder",
    )
