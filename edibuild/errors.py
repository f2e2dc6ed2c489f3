"""User-facing errors: one message naming where and what, plus a hint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """Where a value came from: a file and (when known) a line."""

    file: Path
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else str(self.file)


class EdibuildError(Exception):
    """An error meant for the user: printed as one message, never as a traceback."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        location: Location | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.location = location
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.location is not None:
            where = f"{self.location}: "
        key = f"{self.key}: " if self.key else ""
        text = f"{where}{key}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(EdibuildError):
    """A project file is wrong: bad YAML, unknown key, undefined variable, missing plugin."""


class ToolMissing(EdibuildError):
    """A host tool a stage needs is not installed."""


class CommandFailed(EdibuildError):
    """A command exited non-zero; the message holds a copy-pasteable command and the log tail."""


class StageFailed(EdibuildError):
    """A stage could not produce its artifacts for a reason the stage explains."""


class UnsafePath(EdibuildError):
    """A path edibuild was asked to delete lies outside the folders it owns."""
