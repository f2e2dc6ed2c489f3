"""What dodo.py needs: DOIT_CONFIG and the task creators, or one clear error and exit."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edibuild import doit_ext
from edibuild.errors import EdibuildError
from edibuild.store.workspace import Workspace


def load(root: Path | None = None) -> tuple[dict[str, Any], dict[str, Callable[..., Any]]]:
    """Load the projects (those a `doit run` names, else all) and plan their tasks; bad
    input exits before anything runs."""
    from edibuild.config import load_projects
    from edibuild.config.load import project_files
    from edibuild.config.rendermemo import RenderMemo
    from edibuild.doit_ext import selection
    from edibuild.engine import plan
    from edibuild.engine.session import Session
    from stages import all_stages

    doit_ext.install()
    try:
        workspace = Workspace.from_environment(root)
        stems = [file.stem for file in project_files(workspace.projects_dir)]
        memo = RenderMemo(workspace.render_memo)
        projects = load_projects(
            workspace.projects_dir,
            shipped_dir=workspace.shipped_dir,
            only=selection.wanted(stems),
            memo=memo,
        )
        session = Session(workspace, projects, all_stages())
        session.validate()  # every stage's slice now, not halfway through a build
    except EdibuildError as exc:
        fail_at_load(exc)
    doit_ext.publish(plan.catalog(session))
    # Only a valid configuration gets a state database: bad input creates nothing.
    workspace.state_file.parent.mkdir(parents=True, exist_ok=True)
    memo.save()
    return plan.doit_config(workspace), plan.creators(session)


def fail_at_load(error: EdibuildError) -> None:
    """Report a bad project before anything runs, and exit non-zero."""
    print(f"edibuild: error: {error}", file=sys.stderr)
    raise SystemExit(3)
