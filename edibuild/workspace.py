"""Where a build keeps things: projects, artifacts, the shared cache and doit's state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edibuild import shipped


@dataclass(frozen=True)
class Workspace:
    """The directories of one edibuild checkout (overridable through the environment)."""

    root: Path
    projects_dir: Path
    shipped_dir: Path
    artifacts_dir: Path
    cache_dir: Path
    state_file: Path

    @classmethod
    def from_environment(cls, root: Path | None = None) -> Workspace:
        """Build the workspace from EDIBUILD_* variables, defaulting to folders in `root`.

        `root` is the folder of the dodo.py doit runs (doit works in it): edibuild's
        checkout, or a project repository made by `edibuild init`.
        """
        base = (root or Path.cwd()).resolve()
        env = os.environ

        def pick(var: str, default: Path) -> Path:
            value = env.get(var)
            return Path(value).resolve() if value else default

        state_dir = pick("EDIBUILD_STATE", base / ".edibuild")
        return cls(
            root=base,
            projects_dir=pick("EDIBUILD_PROJECTS", base / "projects"),
            shipped_dir=shipped.directory(),
            artifacts_dir=pick("EDIBUILD_ARTIFACTS", base / "artifacts"),
            cache_dir=pick("EDIBUILD_CACHE", state_dir / "cache"),
            state_file=state_dir / "state.sqlite3",
        )
