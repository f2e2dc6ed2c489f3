"""Jinja2 in a sandbox: render a project file's text with line markers (see render.py).

Project files are not trusted (a colleague's branch, a repository cloned to try it), and
rendering happens on doit commands, planning included. So templates run in Jinja2's
ImmutableSandboxedEnvironment (no attributes starting with `_`, no calls that change
data, no loader: `{% include %}` and `{% import %}` reach no file), `*`, `**` and `+`
cannot make huge values, the output is capped at RENDERED_MAX characters and rendering
at RENDER_SECONDS seconds. A template that tries anything else gets a ConfigError.
Importing this module costs more than a no-op's planning: render.py loads it only for
text it has not rendered before.
"""

from __future__ import annotations

import contextlib
import operator
import signal
import threading
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edibuild.config.keys import key_at_line
from edibuild.config.render import MARK
from edibuild.data import Json
from edibuild.errors import ConfigError, Location

RENDERED_MAX = 4 * 1024 * 1024  # characters of rendered text (the file itself: 1 MiB)
RENDER_SECONDS = 5
REPEAT_MAX = 1024 * 1024  # items a `*` may make of a string or list
POWER_BITS_MAX = 4096  # size of the integers a `**` may make


class RenderLimit(Exception):
    """A template went beyond what rendering a configuration file may take."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with `*`, `**` and `+` unable to make huge values."""

    intercepted_binops = frozenset(["*", "**", "+"])

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        """Apply `*`, `**` or `+` unless it would make a value far beyond any configuration."""
        ints = isinstance(left, int) and isinstance(right, int)
        if operator_name == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > REPEAT_MAX:
                    raise RenderLimit(f"`*` would make {len(seq) * count} items")
            if ints and abs(left).bit_length() + abs(right).bit_length() > POWER_BITS_MAX:
                raise RenderLimit("`*` would make a huge number")
            return operator.mul(left, right)
        if operator_name == "+":
            sized = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
            if sized and len(left) + len(right) > REPEAT_MAX:
                raise RenderLimit(f"`+` would make {len(left) + len(right)} items")
            return operator.add(left, right)
        if ints and abs(left) > 1 and right * abs(left).bit_length() > POWER_BITS_MAX:
            raise RenderLimit(f"`{left} ** {right}` would make a huge number")
        return super().call_binop(context, operator_name, left, right)


_ENV = _Sandbox(
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
    loader=None,
)
# Literal text captured into variables or filtered must stay unmarked.
_OPAQUE = (nodes.AssignBlock, nodes.FilterBlock, nodes.Macro, nodes.CallBlock)


def render_marked(text: str, file: Path, variables: Mapping[str, Json]) -> str:
    """Render `text` (the contents of `file`) with every literal newline marked with its
    source line (render.MARK); raise ConfigError."""
    template = _compile(text, str(file))
    try:
        with _time_limit(RENDER_SECONDS):
            return _bounded(template.generate(variables))
    except Exception as error:  # Jinja2 raises anything a filter or test raises
        raise _render_error(error, text, file) from None


def _bounded(chunks: Iterator[str]) -> str:
    """Join rendered chunks, stopping with RenderLimit past RENDERED_MAX characters."""
    parts: list[str] = []
    size = 0
    line = 1  # the source line the text being written comes from (after the last marker)
    for chunk in chunks:
        size += len(chunk)
        marks = MARK.findall(chunk)
        if marks:
            line = int(marks[-1]) + 1
        if size > RENDERED_MAX:
            raise RenderLimit(f"the rendered text is longer than {RENDERED_MAX} characters", line)
        parts.append(chunk)
    return "".join(parts)


class _TooSlow(RenderLimit):
    """Rendering took longer than RENDER_SECONDS."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with _TooSlow after `seconds` (main thread, no timer of others)."""
    usable = threading.current_thread() is threading.main_thread()
    if not usable or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise _TooSlow(f"rendering took longer than {seconds:g} s (a loop without end?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
    except (RecursionError, MemoryError) as error:
        raise ConfigError(
            f"the Jinja2 expressions are nested too deeply ({type(error).__name__})",
            location=Location(Path(filename)),
            hint="split the expression with {% set name = ... %}",
        ) from None
    for data in _literal_text(tree):
        data.data = _mark_newlines(data.data, data.lineno)
    try:
        code = _ENV.compile(tree, filename=filename)
    except (RecursionError, MemoryError, SyntaxError) as error:
        raise ConfigError(
            f"the Jinja2 template cannot be compiled ({type(error).__name__}: {error})",
            location=Location(Path(filename)),
            hint="split deeply nested expressions with {% set name = ... %}",
        ) from None
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


def _render_error(error: Exception, text: str, file: Path) -> ConfigError:
    """Turn an exception raised while rendering into a ConfigError at the template line."""
    line = _template_line(error.__traceback__, str(file)) or getattr(error, "line", None)
    if isinstance(error, jinja2.UndefinedError):
        message = f"undefined Jinja2 variable: {error.message}"
        hint = (
            "define it under `parameters:` in the project file or an overlay, "
            "or give a default: {{ name | default('value') }}"
        )
    elif isinstance(error, SecurityError):
        message = f"Jinja2 refused an unsafe expression: {error}"
        hint = (
            "project files are rendered in a sandbox: no attributes starting with _, "
            "no methods that change data, no Python objects; use filters and plain values"
        )
    elif isinstance(error, RenderLimit | OverflowError | RecursionError | MemoryError):
        message = f"Jinja2 rendering went beyond its limits: {error or type(error).__name__}"
        hint = "a configuration file renders to at most a few MiB in a few seconds"
    elif isinstance(error, TypeError) and "no loader" in str(error):
        message = "Jinja2 cannot include, import or extend other templates here"
        hint = "use the project's `include:` list to combine files"
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
