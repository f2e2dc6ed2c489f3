"""The moment every output is clamped to, so identical inputs give identical bytes."""

from __future__ import annotations

import os

from edibuild.project import Project
from edibuild.values import epoch

DEFAULT_SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z, when a project sets none


def source_date_epoch(project: Project) -> int:
    """The project's `export.source_date_epoch`, else SOURCE_DATE_EPOCH, else the default."""
    export = project.section("export") or {}
    if export.get("source_date_epoch") is not None:
        where = project.where("export", "source_date_epoch")
        return epoch(export["source_date_epoch"], key="export.source_date_epoch", location=where)
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return DEFAULT_SOURCE_DATE_EPOCH
    return epoch(value, key="SOURCE_DATE_EPOCH", location=None)
