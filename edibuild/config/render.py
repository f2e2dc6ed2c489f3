"""Render a project file with Jinja2 and keep track of which source line made each output line.

Jinja2 can drop or repeat lines ({% if %}, {% for %}), so YAML line numbers of the
rendered text are not the lines of the file.  We tag every newline of the template's
literal text with an invisible marker holding its source line, render, and read the
markers back: errors then point at the line the user wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import TracebackType

import jinja2
from jinja2 import nodes

from edibuild.config.keys import key_at_line
from edibuild.errors import ConfigError, Location
from edibuild.project import Json

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
_MARK = re.compile("\x01(\\d+)\x02")
_JINJA_SYNTAX = ("{{", "{%", "{#")
# Literal text captured into variables or filtered must stay unmarked.
_OPAQUE = (nodes.AssignBlock, nodes.FilterBlock, nodes.Macro, nodes.CallBlock)


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


def render(text: str, file: Path, variables: Mapping[str, Json]) -> Rendered:
    """Render `text` (the contents of `file`) with StrictUndefined; raise ConfigError."""
    if not any(token in text for token in _JINJA_SYNTAX):
        return Rendered(text, tuple(range(1, text.count("\n") + 2)))
    template = _compile(text, str(file))
    try:
        marked = template.render(variables)
    except Exception as error:  # Jinja2 raises anything a filter or test raises
        raise _render_error(error, text, file) from None
    return _unmark(marked)


@lru_cache(maxsize=256)
def _compile(text: str, filename: str) -> jinja2.Template:
    """Parse, mark and compile a template once per (text, file)."""
    try:
        tree = _ENV.parse(text, filename=filename)
    except jinja2.TemplateSyntaxError as error:
        line = error.lineno
        raise ConfigError(
            f"Jinja2 syntax error: {error.message}",
            location=Location(Path(filename), line),
            key=key_at_line(text, line),
            hint="check the {{ }}, {% %} and {# #} tags on this line and the blocks it closes",
        ) from None
    for data in _literal_text(tree):
        data.data = _mark_newlines(data.data, data.lineno)
    code = _ENV.compile(tree, filename=filename)
    return _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None), None)


def _literal_text(node: nodes.Node) -> Iterator[nodes.TemplateData]:
    """Yield the literal text nodes that are written straight to the output."""
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.TemplateData):
            yield child
        elif not isinstance(child, _OPAQUE):
            yield from _literal_text(child)


def _mark_newlines(data: str, first_line: int) -> str:
    """Put a line marker in front of every newline of a literal text block."""
    parts = data.split("\n")
    marked = [f"{part}\x01{first_line + index}\x02" for index, part in enumerate(parts[:-1])]
    return "\n".join([*marked, parts[-1]])


def _unmark(marked: str) -> Rendered:
    """Strip the markers and map each rendered line to the source line it ends on."""
    found: list[int | None] = []
    for line in marked.split("\n"):
        match = _MARK.search(line)
        found.append(int(match.group(1)) if match else None)
    lines: list[int] = []
    following = found[-1] if found[-1] is not None else (max(filter(None, found), default=1))
    for value in reversed(found):
        following = value if value is not None else following
        lines.append(following)
    lines.reverse()
    return Rendered(_MARK.sub("", marked), tuple(lines))


def _render_error(error: Exception, text: str, file: Path) -> ConfigError:
    """Turn an exception raised while rendering into a ConfigError at the template line."""
    line = _template_line(error.__traceback__, str(file))
    if isinstance(error, jinja2.UndefinedError):
        message = f"undefined Jinja2 variable: {error.message}"
        hint = (
            "define it under `parameters:` in the project file or an overlay, "
            "or give a default: {{ name | default('value') }}"
        )
    else:
        message = f"Jinja2 rendering failed: {type(error).__name__}: {error}"
        hint = "check the expression on this line"
    return ConfigError(
        message, location=Location(file, line), key=key_at_line(text, line), hint=hint
    )


def _template_line(trace: TracebackType | None, filename: str) -> int | None:
    """Find the template line in a traceback that Jinja2 rewrote to point into the file."""
    line = None
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == filename:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line
