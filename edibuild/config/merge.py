"""Deep-merge configuration layers: mappings merge, lists and scalars are replaced."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from edibuild.config.yamlpos import KeyPath, Layer
from edibuild.data import Json
from edibuild.errors import Location


def deep_merge(base: Mapping[str, Json], top: Mapping[str, Json]) -> dict[str, Json]:
    """Return `base` updated by `top`: nested mappings merge, anything else is replaced."""
    result = dict(base)
    for key, value in top.items():
        old = result.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            result[key] = deep_merge(old, value)
        else:
            result[key] = value  # layers are freshly parsed and never mutated: no copy
    return result


def merge_layers(layers: Iterable[Layer]) -> tuple[dict[str, Json], dict[KeyPath, Location]]:
    """Merge layers in order (later wins) and say where each surviving key was last set."""
    data: dict[str, Json] = {}
    seen: dict[KeyPath, Location] = {}
    for layer in layers:
        data = deep_merge(data, layer.data)
        seen.update(layer.locations)
    return data, locations_of(data, seen)


def locations_of(data: Json, seen: Mapping[KeyPath, Location]) -> dict[KeyPath, Location]:
    """Keep only the locations of key paths that still exist in `data`."""
    return {path: seen[path] for path in key_paths(data, ()) if path in seen}


def key_paths(value: Json, prefix: KeyPath) -> Iterator[KeyPath]:
    """Yield every key path below `prefix` (list items as their index)."""
    if isinstance(value, dict):
        items: Iterable[tuple[str, Json]] = value.items()
    elif isinstance(value, list):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return
    for key, item in items:
        path = (*prefix, key)
        yield path
        yield from key_paths(item, path)
