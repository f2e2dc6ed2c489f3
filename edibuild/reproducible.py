"""The moment every output is clamped to, so identical inputs give identical bytes."""

from __future__ import annotations

import os

from edibuild.project import Project

DEFAULT_SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z, when a project sets none


def source_date_epoch(project: Project) -> int:
    """The project's `export.source_date_epoch`, else SOURCE_DATE_EPOCH, else the default."""
    export = project.section("export") or {}
    value = export.get("source_date_epoch") or os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value else DEFAULT_SOURCE_DATE_EPOCH
