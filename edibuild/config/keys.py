"""Guess the dotted YAML key a source line belongs to, for errors raised before parsing."""

from __future__ import annotations

import re

_KEY_LINE = re.compile(
    r"""^(?P<indent>[ -]*)(?P<key>"[^"]*"|'[^']*'|[^\s#'"{}\[\]|>&*!%@`][^:#]*?)\s*:(?:\s|$)"""
)


def key_at_line(text: str, line: int | None) -> str | None:
    """Return the dotted key path of the block-style YAML key owning `line` (1-based)."""
    if line is None:
        return None
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    here = lines[line - 1]
    limit: int | None = None
    if _KEY_LINE.match(here) is None:
        limit = len(here) - len(here.lstrip(" -")) + 1
    path: list[str] = []
    for current in reversed(lines[:line]):
        match = _KEY_LINE.match(current)
        if match is None:
            continue
        indent = len(match.group("indent"))
        if limit is None or indent < limit:
            path.append(match.group("key").strip("'\""))
            limit = indent
            if indent == 0:
                break
    return ".".join(reversed(path)) or None
