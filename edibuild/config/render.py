"""Render a project file with Jinja2 and keep track of which source line made each output line.

Jinja2 can drop or repeat lines ({% if %}, {% for %}), so YAML line numbers of the
rendered text are not the lines of the file.  We tag every newline of the template's
literal text with an invisible marker holding its source line, render, and read the
markers back: errors then point at the line the user wrote.

Templates run in a sandbox (sandbox.py: project files are not trusted). What was rendered
is remembered across runs (rendermemo.py) while a memo is active, so a run whose files
and variables did not change imports no Jinja2 at all.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edibuild.data import Json

if TYPE_CHECKING:
    from edibuild.config.rendermemo import RenderMemo

MARK = re.compile("\x01(\\d+)\x02")  # the source line of the newline that follows
_JINJA_SYNTAX = ("{{", "{%", "{#")
_active: RenderMemo | None = None


@dataclass(frozen=True)
class Rendered:
    """Rendered text plus the source line (1-based) of every rendered line."""

    text: str
    lines: tuple[int, ...]

    def source_line(self, line: int) -> int | None:
        """Map a 1-based rendered line to the line of the file it came from."""
        if 1 <= line <= len(self.lines):
            return self.lines[line - 1]
        return self.lines[-1] if self.lines else None


@contextlib.contextmanager
def remembering(memo: RenderMemo | None) -> Iterator[None]:
    """Serve and record renders through `memo` in the block (None: render everything)."""
    global _active
    previous, _active = _active, memo
    try:
        yield
    finally:
        _active = previous


def render(text: str, file: Path, variables: Mapping[str, Json]) -> Rendered:
    """Render `text` (the contents of `file`) in the sandbox; raise ConfigError."""
    if not any(token in text for token in _JINJA_SYNTAX):
        return Rendered(text, tuple(range(1, text.count("\n") + 2)))
    memo = _active
    key = memo.key(text, file, variables) if memo is not None else None
    if memo is None or key is None:
        return _render_afresh(text, file, variables)
    known = memo.get(key)
    if known is None:
        known = _render_afresh(text, file, variables)
        memo.put(key, known)
    return known


def _render_afresh(text: str, file: Path, variables: Mapping[str, Json]) -> Rendered:
    from edibuild.config import sandbox  # Jinja2: only for what was not rendered before

    return _unmark(sandbox.render_marked(text, file, variables))


def _unmark(marked: str) -> Rendered:
    """Strip the markers and map each rendered line to the source line it ends on."""
    found: list[int | None] = []
    for line in marked.split("\n"):
        match = MARK.search(line)
        found.append(int(match.group(1)) if match else None)
    lines: list[int] = []
    following = found[-1] if found[-1] is not None else (max(filter(None, found), default=1))
    for value in reversed(found):
        following = value if value is not None else following
        lines.append(following)
    lines.reverse()
    return Rendered(MARK.sub("", marked), tuple(lines))
