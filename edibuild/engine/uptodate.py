"""doit's up-to-date probe of a stage task: its outputs and the external state they name.

It runs on every doit invocation, a no-op included, so it stays apart from the build
(edibuild/engine/build.py) and the explanations (explain.py), which load on demand.
"""

from __future__ import annotations

from collections.abc import Mapping

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.session import Session
from edibuild.engine.stage import Stage
from edibuild.errors import EdibuildError
from edibuild.store.fsutil import read_json


def external_state(project: Project, stage: Stage, info: Mapping[str, Json]) -> list[str]:
    """[] while the external state the outputs stand for exists; else why not (or why unknown)."""
    try:
        if stage.intact(project, info):
            return []
    except EdibuildError as exc:  # LXD unreachable, say: a run stops with this error
        return [f"its external state cannot be checked: {exc.message}"]
    return ["external state it stands for is gone (see the stage's docs)"]


def outputs_intact(session: Session, project: Project, stage: Stage) -> bool:
    """Up-to-date probe: the outputs are present and any external state still exists.

    When the external state cannot be checked (LXD unreachable, say) the task runs, and
    its run stops with that error before it touches anything (doit would show a
    traceback for an error raised here).
    """
    arts = session.artifacts(project)
    if not arts.intact(stage.name):
        return False
    manifest = read_json(arts.manifest(stage.name)) or {}
    return not external_state(project, stage, manifest.get("info") or {})
