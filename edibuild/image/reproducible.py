"""The moment every output is clamped to, so identical inputs give identical bytes.

The project's `export: {source_date_epoch: 1704067200}` section sets it; else the
SOURCE_DATE_EPOCH environment variable; else DEFAULT_SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from edibuild.config.reader import Reader
from edibuild.config.values import epoch

DEFAULT_SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z, when a project sets none
EXPORT_KEYS = ("source_date_epoch",)


@dataclass(frozen=True)
class ExportSettings:
    """The `export` section: the project's own SOURCE_DATE_EPOCH, if it sets one."""

    source_date_epoch: int | None = None


def parse_export(reader: Reader | None) -> ExportSettings:
    """Read the `export` section (digits in a string are accepted, as in the environment)."""
    if reader is None:
        return ExportSettings()
    reader.known(EXPORT_KEYS)
    if reader.raw("source_date_epoch") is None:
        return ExportSettings()
    value = epoch(
        reader.raw("source_date_epoch"),
        key=reader.key("source_date_epoch"),
        location=reader.location("source_date_epoch"),
    )
    return ExportSettings(value)


class HasExport(Protocol):
    """What `source_date_epoch` needs of a project (no import of the Project here)."""

    @property
    def export(self) -> ExportSettings: ...


def source_date_epoch(project: HasExport) -> int:
    """The project's `export.source_date_epoch`, else SOURCE_DATE_EPOCH, else the default."""
    if project.export.source_date_epoch is not None:
        return project.export.source_date_epoch
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return DEFAULT_SOURCE_DATE_EPOCH
    return epoch(value, key="SOURCE_DATE_EPOCH", location=None)
