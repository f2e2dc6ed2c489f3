"""The moment every output is clamped to, so identical inputs give identical bytes."""

from __future__ import annotations

import os

from edibuild.errors import ConfigError, Location
from edibuild.project import Project

DEFAULT_SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z, when a project sets none
LATEST = 2**33  # year 2242: beyond what tar, ext4 and FAT all store


def source_date_epoch(project: Project) -> int:
    """The project's `export.source_date_epoch`, else SOURCE_DATE_EPOCH, else the default."""
    export = project.section("export") or {}
    value = export.get("source_date_epoch")
    if value is not None:
        where = project.where("export", "source_date_epoch")
        return _epoch(value, "export.source_date_epoch", where)
    from_env = os.environ.get("SOURCE_DATE_EPOCH")
    if from_env:
        return _epoch(from_env, "SOURCE_DATE_EPOCH (environment)", None)
    return DEFAULT_SOURCE_DATE_EPOCH


def _epoch(value: object, key: str, location: Location | None) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 0 <= int(text) < LATEST:
        raise ConfigError(
            f"must be whole seconds since 1970 (UTC), not {value!r}",
            location=location,
            key=key,
            hint="for example 1704067200 (2024-01-01); `date -d 2024-01-01 +%s` prints one",
        )
    return int(text)
