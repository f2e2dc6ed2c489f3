"""The pipeline: one module per stage; reading STAGE_MODULES is reading the pipeline."""

from __future__ import annotations

import importlib

from edibuild.stage import Stage

# In pipeline order. Each module defines STAGE (an edibuild.stage.Stage).
STAGE_MODULES: tuple[str, ...] = (
    "bootstrap",
    "lxd_import",
    "configure",
    "export",
    "partitions",
    "disk",
    "bmap",
    "mender",
    "boottest",
    "devcontainer",
)


def all_stages() -> tuple[Stage, ...]:
    """Return every stage of the pipeline, in order."""
    stages = []
    for name in STAGE_MODULES:
        module = importlib.import_module(f"stages.{name}")
        stages.append(module.STAGE)
    return tuple(stages)
