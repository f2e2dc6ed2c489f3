"""Parse YAML safely into plain JSON data while recording the line of every key.

Parsing is bounded before anything is composed: the parser's events are counted first,
so nesting deeper than MAX_DEPTH (libyaml's composer recurses on the C stack and can
crash the process) and documents whose aliases expand to more than MAX_VALUES values
(an "alias bomb": a few hundred bytes that expand to gigabytes) are refused with one
message at the line where the limit was crossed.
"""

from __future__ import annotations

import copy
import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edibuild.config.keys import key_at_line
from edibuild.config.render import Rendered
from edibuild.data import Json
from edibuild.errors import ConfigError, Location

KeyPath = tuple[str, ...]
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_DEPTH = 64
MAX_VALUES = 100_000
_COLLECTION_START = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_COLLECTION_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


@dataclass
class Layer:
    """One parsed file: its data and where each key path (list items as "0", "1") was set."""

    file: Path
    data: dict[str, Json]
    locations: dict[KeyPath, Location] = field(default_factory=dict)

    def where(self, *keys: str) -> Location:
        """Return the location of a key path in this file (the file itself if unknown)."""
        return self.locations.get(tuple(keys), Location(self.file))


# Layers parsed in this process by (rendered text, file): 50 projects including the same
# file with the same values parse it once. Each caller gets its own copy.
_PARSED: dict[tuple[Rendered, Path], Layer] = {}
MAX_PARSED = 512


def parse(rendered: Rendered, file: Path) -> Layer:
    """Parse rendered YAML into a Layer; a top-level mapping (or nothing) is required."""
    key = (rendered, file)
    found = _PARSED.get(key)
    if found is None:
        found = _parse(rendered, file)
        if len(_PARSED) >= MAX_PARSED:
            _PARSED.clear()
        _PARSED[key] = found
    return Layer(found.file, copy.deepcopy(found.data), dict(found.locations))


def _parse(rendered: Rendered, file: Path) -> Layer:
    check_events(rendered, file)
    loader = _Loader(rendered.text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error, rendered, file) from None
    finally:
        loader.dispose()
    layer = Layer(file, {})
    if root is None:
        return layer
    builder = _Builder(loader, layer, rendered)
    data = builder.value(root, (), 0)
    if not isinstance(data, dict):
        raise ConfigError(
            f"a project file must be a mapping of sections, got {describe(data)}",
            location=Location(file, builder.line(root)),
            hint="write `section: value` lines, e.g. `bootstrap:` at the start of a line",
        )
    layer.data = data
    return layer


@dataclass
class _Open:
    """A collection whose end event has not come yet."""

    anchor: str | None
    height: int = 0  # levels of nesting below it so far (aliases expanded)


class _Budget:
    """Counts values and nesting as the parser's events come, refusing what is too much."""

    def __init__(self, rendered: Rendered, file: Path) -> None:
        self.rendered, self.file = rendered, file
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, height) when done
        self.sizes: list[int] = []  # values so far of each open collection
        self.total = 0

    def limit(self, event: yaml.Event, message: str, hint: str) -> ConfigError:
        """The error at the line of `event`."""
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        return ConfigError(
            message,
            location=Location(self.file, self.rendered.source_line(line) if line else None),
            key=key_at_line(self.rendered.text, line),
            hint=hint,
        )

    def add(self, event: yaml.Event, values: int, height: int) -> None:
        """Count `values` values that nest `height` levels below the current one."""
        self.total += values
        if self.total > MAX_VALUES:
            raise self.limit(
                event,
                f"more than {MAX_VALUES} values once its aliases are expanded",
                "aliases that repeat aliases multiply: write the values out, or use fewer",
            )
        if len(self.stack) + height > MAX_DEPTH:
            raise self.limit(
                event,
                f"nested more than {MAX_DEPTH} levels deep",
                "a configuration needs a few levels; flatten the lists and mappings",
            )
        if self.stack:
            self.sizes[-1] += values
            self.stack[-1].height = max(self.stack[-1].height, height)

    def close(self) -> None:
        """A collection ended: remember its size under its anchor, pass its height up."""
        done, values = self.stack.pop(), self.sizes.pop()
        if done.anchor is not None:
            self.anchors[done.anchor] = (values, done.height + 1)
        if self.stack:
            self.sizes[-1] += values - 1  # its start was counted already
            self.stack[-1].height = max(self.stack[-1].height, done.height + 1)

    def alias(self, event: yaml.AliasEvent) -> None:
        """An alias counts as the whole value it repeats (never one it is inside)."""
        if any(entry.anchor == event.anchor for entry in self.stack):
            raise self.limit(
                event,
                f"the alias *{event.anchor} repeats a value it is part of",
                "an alias may only repeat a value that ends before it",
            )
        self.add(event, *self.anchors.get(event.anchor or "", (1, 0)))

    def event(self, event: yaml.Event) -> None:
        """Account for one parser event."""
        if isinstance(event, _COLLECTION_START):
            self.add(event, 1, 1)
            self.stack.append(_Open(event.anchor))
            self.sizes.append(1)
        elif isinstance(event, _COLLECTION_END):
            self.close()
        elif isinstance(event, yaml.ScalarEvent):
            self.add(event, 1, 0)
            if event.anchor is not None:
                self.anchors[event.anchor] = (1, 0)
        elif isinstance(event, yaml.AliasEvent):
            self.alias(event)


def check_events(rendered: Rendered, file: Path) -> None:
    """Refuse YAML nested deeper than MAX_DEPTH or expanding to more than MAX_VALUES values.

    Works on the parser's events only (no nodes are composed): every alias counts as the
    number of values and the nesting of the anchored value it repeats.
    """
    loader = _Loader(rendered.text)
    budget = _Budget(rendered, file)
    try:
        while (event := loader.get_event()) is not None:
            budget.event(event)
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error, rendered, file) from None
    finally:
        loader.dispose()


def _what(key: Json | yaml.Node) -> str:
    """Name a key that is not a string: its type, or the YAML tag of a collection."""
    return key.tag if isinstance(key, yaml.Node) else describe(key)


def describe(value: Json) -> str:
    """Name a value's type the way a YAML user thinks of it ('a string', 'a list')."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "a mapping", type(None): "nothing (null)"}
    return names.get(type(value), type(value).__name__)


def _syntax_error(error: yaml.MarkedYAMLError, rendered: Rendered, file: Path) -> ConfigError:
    """Turn a PyYAML error into a ConfigError pointing at the user's line."""
    mark = _blame(error, rendered.text)
    line = rendered.source_line(mark.line + 1) if mark is not None else None
    text = error.problem or "invalid YAML"
    if error.context:
        context = error.context_mark
        started = (
            "" if context is None else f" started on line {rendered.source_line(context.line + 1)}"
        )
        text = f"{text} ({error.context}{started})"
    key = key_at_line(rendered.text, mark.line + 1) if mark is not None else None
    return ConfigError(
        f"YAML syntax error: {text}",
        location=Location(file, line),
        key=key,
        hint="check indentation (spaces, not tabs), colons and quotes here and on the line above",
    )


def _blame(error: yaml.MarkedYAMLError, text: str) -> yaml.Mark | None:
    """Pick the mark to report: the problem, unless it sits on an empty line past the text."""
    mark = error.problem_mark or error.context_mark
    if mark is None or error.context_mark is None:
        return mark
    lines = text.split("\n")
    rest = lines[mark.line :] if mark.line < len(lines) else []
    return error.context_mark if not any(line.strip() for line in rest) else mark


class _Builder:
    """Walk PyYAML nodes, build plain data and record key locations."""

    def __init__(self, loader: yaml.SafeLoader, layer: Layer, rendered: Rendered) -> None:
        self.loader = loader
        self.layer = layer
        self.rendered = rendered

    def line(self, node: yaml.Node) -> int | None:
        """Return the source line of a node."""
        return self.rendered.source_line(node.start_mark.line + 1)

    def error(self, message: str, node: yaml.Node, path: KeyPath, hint: str) -> ConfigError:
        """Build a ConfigError for a node."""
        location = Location(self.layer.file, self.line(node))
        return ConfigError(message, location=location, key=".".join(path) or None, hint=hint)

    def value(self, node: yaml.Node, path: KeyPath, depth: int) -> Json:
        """Convert one node (recursively) to JSON data."""
        if depth > MAX_DEPTH:
            raise self.error("nested too deeply (a recursive alias?)", node, path, "remove it")
        if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_TAGS:
            raise self.error(
                f"unsupported YAML type {node.tag}", node, path, "use plain lists and mappings"
            )
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                item_path = (*path, str(index))
                self.layer.locations[item_path] = Location(self.layer.file, self.line(item))
                items.append(self.value(item, item_path, depth + 1))
            return items
        return self.scalar(node, path)

    def mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[str, Json]:
        """Convert a mapping node; reject duplicate and non-string keys."""
        seen: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.key(key_node, path)
            if key in seen:
                first = self.line(seen[key])
                raise self.error(
                    f"key set twice in the same mapping (first on line {first})",
                    key_node, (*path, key), "delete one of the two",
                )  # fmt: skip
            seen[key] = key_node
        self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        result: dict[str, Json] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, path)
            self.layer.locations[(*path, key)] = Location(self.layer.file, self.line(key_node))
            result[key] = self.value(value_node, (*path, key), depth + 1)
        return result

    def key(self, node: yaml.Node, path: KeyPath) -> str:
        """Return a mapping key, which must be a string."""
        key = self.scalar(node, path) if isinstance(node, yaml.ScalarNode) else node
        if not isinstance(key, str):
            raise self.error(
                f"keys must be strings, got {_what(key)}",
                node, path, 'quote the key ("100":), or better name it (100_name:)',
            )  # fmt: skip
        return key

    def scalar(self, node: yaml.Node, path: KeyPath) -> Json:
        """Construct a scalar and keep it JSON-compatible (dates become ISO strings)."""
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, datetime.date):
            return value.isoformat()
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error("infinite or NaN numbers are not allowed", node, path, "quote it")
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise self.error(
            f"unsupported YAML value of type {type(value).__name__} ({node.tag})",
            node, path, "use plain strings, numbers, booleans, lists and mappings",
        )  # fmt: skip
