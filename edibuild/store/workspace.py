"""Where a build keeps things: projects, artifacts, the shared cache and doit's state.

The folders come from EDIBUILD_PROJECTS, EDIBUILD_ARTIFACTS, EDIBUILD_CACHE and
EDIBUILD_STATE (or defaults in the checkout) and are checked before anything runs:
none may be `/` or a file, the projects folder must exist, and the artifact folder,
since cleaning deletes inside it, must not be, hold or lie in the cache or the state
folder, nor be or hold the projects folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edibuild.config import shipped
from edibuild.errors import EdibuildError


@dataclass(frozen=True)
class Workspace:
    """The directories of one edibuild checkout (overridable through the environment)."""

    root: Path
    projects_dir: Path
    shipped_dir: Path
    artifacts_dir: Path
    cache_dir: Path
    state_file: Path

    @property
    def render_memo(self) -> Path:
        """The project files rendered before (config/rendermemo.py), beside doit's state."""
        return self.state_file.with_name("rendered.json")

    @classmethod
    def from_environment(cls, root: Path | None = None) -> Workspace:
        """Build the workspace from EDIBUILD_* variables, defaulting to folders in `root`.

        `root` is the folder of the dodo.py doit runs (doit works in it): edibuild's
        checkout, or a project repository made by `edibuild init`.
        """
        base = (root or Path.cwd()).resolve()
        env = os.environ
        named: dict[str, str] = {}

        def pick(var: str, default: Path, *, must_exist: bool = False) -> Path:
            value = env.get(var)
            path = Path(value).resolve() if value else default
            what = f"{var}={value}" if value else f"{var} (not set: {path})"
            check_folder(path, what, must_exist=must_exist)
            named[var] = what
            return path

        state_dir = pick("EDIBUILD_STATE", base / ".edibuild")
        workspace = cls(
            root=base,
            projects_dir=pick("EDIBUILD_PROJECTS", base / "projects", must_exist=True),
            shipped_dir=shipped.directory(),
            artifacts_dir=pick("EDIBUILD_ARTIFACTS", base / "artifacts"),
            cache_dir=pick("EDIBUILD_CACHE", state_dir / "cache"),
            state_file=state_dir / "state.sqlite3",
        )
        arts = workspace.artifacts_dir
        others = {
            "EDIBUILD_CACHE": workspace.cache_dir,
            "EDIBUILD_STATE": state_dir,
            "EDIBUILD_PROJECTS": workspace.projects_dir,
        }
        for var, other in others.items():
            below = arts.is_relative_to(other) and var != "EDIBUILD_PROJECTS"
            if arts == other or below or other.is_relative_to(arts):
                raise EdibuildError(
                    f"{named['EDIBUILD_ARTIFACTS']} overlaps {named[var]}",
                    hint="cleaning deletes inside the artifact folder: give it a folder of "
                    "its own, apart from the cache, the state and the projects",
                )
        return workspace


def check_folder(path: Path, what: str, *, must_exist: bool = False) -> None:
    """Refuse `/`, a file, a missing folder (with `must_exist`) or a path through a file."""
    if path == Path(path.anchor):
        raise EdibuildError(
            f"{what}: the root directory cannot be an edibuild folder",
            hint="point it at a folder of its own, e.g. /srv/edibuild/artifacts",
        )
    if path.exists() and not path.is_dir():
        raise EdibuildError(
            f"{what}: {path} is not a folder", hint="point it at a folder (or a new path)"
        )
    if must_exist and not path.is_dir():
        raise EdibuildError(
            f"{what}: the folder {path} does not exist",
            hint="point it at the folder holding your NAME.yml project files",
        )
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EdibuildError(
            f"{what}: {parent} is a file, so {path} cannot be made",
            hint="point it at a folder (or a new path below one)",
        )
