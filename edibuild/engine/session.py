"""One doit invocation's view of a workspace: projects, pipeline, cache, artifacts.

Configuration slices are computed (and so validated) once per invocation; planning,
building and explaining all ask the session, so they agree on every input.
"""

from __future__ import annotations

from collections.abc import Sequence

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.inputs import Digests, StageInputs, gather
from edibuild.engine.pipeline import Pipeline
from edibuild.engine.stage import Stage
from edibuild.store.artifacts import ProjectArtifacts
from edibuild.store.cache import Cache
from edibuild.store.workspace import Workspace


class Session:
    """The loaded projects and stages of one workspace."""

    def __init__(
        self, workspace: Workspace, projects: Sequence[Project], stages: Sequence[Stage]
    ) -> None:
        self.workspace = workspace
        self.projects = tuple(projects)
        self.pipeline = Pipeline(stages)
        self.cache = Cache(workspace.cache_dir)
        self._configs: dict[tuple[str, str], Json] = {}

    def project(self, name: str) -> Project | None:
        """The project called `name`, if it is loaded."""
        return next((p for p in self.projects if p.name == name), None)

    def artifacts(self, project: Project) -> ProjectArtifacts:
        """The artifact directory of a project."""
        return ProjectArtifacts(self.workspace.artifacts_dir, project.name)

    def stage_config(self, project: Project, stage: Stage) -> Json:
        """A stage's configuration slice (validating its section the first time)."""
        key = (project.name, stage.name)
        if key not in self._configs:
            self._configs[key] = stage.config(project)
        return self._configs[key]

    def validate(self) -> None:
        """Compute every enabled stage's slice now: bad input fails before anything runs."""
        for project in self.projects:
            for stage in self.pipeline.enabled(project):
                self.stage_config(project, stage)

    def installed_upstream(self, project: Project, stage: Stage) -> dict[str, dict[str, str]]:
        """The digests of the installed outputs of the stages `stage` reads ({} if missing)."""
        arts = self.artifacts(project)
        found: dict[str, dict[str, str]] = {}
        for up in stage.upstream:
            outputs = arts.outputs(up)
            if outputs is not None:
                found[up] = {n: o.sha256 for n, o in sorted(outputs.items())}
        return found

    def inputs(self, project: Project, stage: Stage, upstream: Digests) -> StageInputs:
        """The stage's inputs, given the digests of its upstream outputs."""
        return gather(stage, project, self.stage_config(project, stage), upstream)
