"""The pipeline: one module per stage; reading STAGE_MODULES is reading the pipeline."""

from __future__ import annotations

import importlib

from edibuild.engine.stage import Stage

# One module per stage, named after it (`import_`: import is a Python keyword); each defines
# STAGE (an edibuild.engine.stage.Stage). The order runs are planned in comes from what each
# stage reads (edibuild/engine/pipeline.py), not from this list.
STAGE_MODULES: tuple[str, ...] = (
    "bootstrap",
    "import_",
    "configure",
    "export",
    "partitions",
    "disk",
    "bmap",
    "mender",
    "boottest",
    "container",
)


def all_stages() -> tuple[Stage, ...]:
    """Return every stage of the pipeline, in order."""
    stages = []
    for name in STAGE_MODULES:
        module = importlib.import_module(f"stages.{name}")
        stages.append(module.STAGE)
    return tuple(stages)
