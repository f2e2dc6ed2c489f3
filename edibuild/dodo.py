"""What dodo.py needs: DOIT_CONFIG and the task creators, or one clear error and exit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edibuild import doit_ext
from edibuild.engine import Engine, doit_config, fail_at_load
from edibuild.errors import EdibuildError
from edibuild.workspace import Workspace


def load() -> tuple[dict[str, Any], dict[str, Callable[..., Any]]]:
    """Load every project and build the engine; bad input exits before anything runs."""
    from edibuild.config import load_projects
    from stages import all_stages

    doit_ext.install()
    try:
        workspace = Workspace.from_environment()
        projects = load_projects(workspace.projects_dir, shipped_dir=workspace.shipped_dir)
        engine = Engine(workspace, projects, all_stages())
        for project in projects:  # validate every stage's slice now, not halfway through
            for stage in engine.enabled_stages(project):
                engine.stage_config(project, stage)
    except EdibuildError as exc:
        fail_at_load(exc)
    # Only a valid configuration gets a state database: bad input creates nothing.
    workspace.state_file.parent.mkdir(parents=True, exist_ok=True)
    return doit_config(workspace), dict(engine.creators())
