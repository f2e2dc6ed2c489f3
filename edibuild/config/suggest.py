"""Helpers for friendly messages: "did you mean ...?" hints and type checks."""

from __future__ import annotations

from collections.abc import Iterable

from edibuild.config.yamlpos import describe
from edibuild.data import Json
from edibuild.errors import ConfigError, Location


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return a hint naming the closest choice, or listing all choices."""
    import difflib  # only when a message is made, not at every doit start

    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}? (known: {', '.join(options)})"
    return f"known: {', '.join(options)}"


def expect_mapping(value: Json, key: str, location: Location) -> dict[str, Json]:
    """Return `value` if it is a mapping, else raise a ConfigError naming `key`."""
    if isinstance(value, dict):
        return value
    raise ConfigError(
        f"must be a mapping, got {describe(value)}",
        location=location,
        key=key,
        hint=f"write `{key.rsplit('.', 1)[-1]}:` followed by indented `name: value` lines",
    )


def expect_str_list(value: Json, key: str, location: Location, what: str) -> tuple[str, ...]:
    """Return a list of strings as a tuple, else raise ("... must be a list of what")."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    got = describe(value)
    if isinstance(value, list):
        wrong = {describe(item) for item in value if not isinstance(item, str)}
        got = "a list with " + ", ".join(sorted(wrong))
    raise ConfigError(
        f"must be a list of {what}, got {got}",
        location=location,
        key=key,
        hint=f"write `{key.rsplit('.', 1)[-1]}: [first, second]` or one `- item` per line",
    )


def expect_str(value: Json, key: str, location: Location, what: str) -> str:
    """Return `value` if it is a non-empty string, else raise ("... must be what")."""
    if isinstance(value, str) and value:
        return value
    raise ConfigError(
        f"must be {what}, got {describe(value)}",
        location=location,
        key=key,
        hint="quote the value if YAML reads it as something else",
    )
