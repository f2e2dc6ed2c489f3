"""Jinja2 rendering with source line tracking, YAML parsing with key lines, deep merge."""

from __future__ import annotations

from pathlib import Path

import pytest

from edibuild.config.keys import key_at_line
from edibuild.config.merge import deep_merge, merge_layers
from edibuild.config.render import render
from edibuild.config.yamlpos import parse
from edibuild.errors import ConfigError

FILE = Path("/virtual/p.yml")


def test_plain_yaml_skips_jinja() -> None:
    """Files without Jinja2 tags are used as they are, line for line."""
    rendered = render("a: 1\nb: 2\n", FILE, {})
    assert rendered.text == "a: 1\nb: 2\n"
    assert [rendered.source_line(n) for n in (1, 2)] == [1, 2]


def test_rendered_lines_map_to_source_lines() -> None:
    """Dropped, repeated and multi-line output keeps pointing at the template line."""
    source = (
        "a: 1\n{% if x %}\nb: {{ y }}\n{% endif %}\nc:\n{% for i in [1, 2] %}\n"
        "  - {{ i }}\n{% endfor %}\nd: {{ multi | tojson }}\ne: end\n"
    )
    rendered = render(source, FILE, {"x": True, "y": 2, "multi": "p\nq"})
    lines = rendered.text.split("\n")
    assert lines[:5] == ["a: 1", "b: 2", "c:", "  - 1", "  - 2"]
    assert [rendered.source_line(n) for n in range(1, 8)] == [1, 3, 5, 7, 7, 9, 10]
    assert "\x01" not in rendered.text


def test_set_blocks_are_not_marked() -> None:
    """Text captured by {% set %} blocks stays exactly as written."""
    rendered = render("{% set x %}\nline\n{% endset %}\nv: {{ x | length }}\n", FILE, {})
    assert rendered.text == "v: 5\n"


def test_undefined_variable_points_at_its_line() -> None:
    """StrictUndefined errors name the variable, file, line and key."""
    with pytest.raises(ConfigError) as caught:
        render("a:\n  b:\n    c: {{ nope }}\n", FILE, {})
    error = caught.value
    assert "'nope' is undefined" in error.message
    assert error.location is not None and (error.location.file, error.location.line) == (FILE, 3)
    assert error.key == "a.b.c"


def test_other_render_failures_are_config_errors() -> None:
    """A failing expression is a ConfigError too, not a traceback."""
    with pytest.raises(ConfigError, match="ZeroDivisionError"):
        render("a: {{ 1 // 0 }}\n", FILE, {})


def test_yaml_locations_merge_keys_and_lists() -> None:
    """Keys, list items and <<: merge keys all get lines."""
    text = "base: &b\n  x: 1\nderived:\n  <<: *b\n  y: [1, 2]\n"
    layer = parse(render(text, FILE, {}), FILE)
    assert layer.data == {"base": {"x": 1}, "derived": {"x": 1, "y": [1, 2]}}
    assert layer.where("derived", "y").line == 5
    assert layer.where("derived", "y", "1").line == 5
    assert layer.where("base", "x").line == 2


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("a:\n  b:\n    - x\n    - y\n  c: 1\n", 4, "a.b"),
        ("a:\n  b:\n    - x\n  c: 1\n", 4, "a.c"),
        ("top: 1\n", 1, "top"),
        ("- x\n", 1, None),
    ],
)
def test_key_at_line(text: str, line: int, key: str | None) -> None:
    """The key guessed from indentation is the one owning the line."""
    assert key_at_line(text, line) == key


def test_deep_merge() -> None:
    """Mappings merge; lists and scalars are replaced; inputs are not modified."""
    base = {"a": {"x": 1, "l": [1, 2]}, "s": 1}
    top = {"a": {"y": 2, "l": [3]}, "s": {"now": "map"}}
    assert deep_merge(base, top) == {"a": {"x": 1, "l": [3], "y": 2}, "s": {"now": "map"}}
    assert base == {"a": {"x": 1, "l": [1, 2]}, "s": 1}


def test_merge_layers_keeps_the_last_setter() -> None:
    """Locations follow the layer that last set a key; replaced children are forgotten."""
    first = parse(render("a:\n  l: [1, 2, 3]\n  k: 1\n", Path("/1.yml"), {}), Path("/1.yml"))
    second = parse(render("a:\n  l: [9]\n", Path("/2.yml"), {}), Path("/2.yml"))
    data, locations = merge_layers([first, second])
    assert data == {"a": {"l": [9], "k": 1}}
    assert locations[("a", "l")].file == Path("/2.yml")
    assert locations[("a", "k")].file == Path("/1.yml")
    assert ("a", "l", "2") not in locations
