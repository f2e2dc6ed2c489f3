"""The stages of a project, in dependency order: the built-in ones, then its own.

The order is derived from each stage's `upstream`, never from the order of a list, so
declaring stages in another order changes nothing; a stage that reads an unknown stage,
or a cycle, is an error at load.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from edibuild.config.project import Project
from edibuild.engine.stage import Stage
from edibuild.engine.userstage import user_stages
from edibuild.errors import EdibuildError


def in_dependency_order(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    """Return `stages` with every stage after its upstream (otherwise in the given order)."""
    by_name: dict[str, Stage] = {}
    for stage in stages:
        if stage.name in by_name:
            raise EdibuildError(f"two stages are called {stage.name!r}")
        by_name[stage.name] = stage
    ordered: list[Stage] = []
    done: set[str] = set()

    def visit(stage: Stage, chain: tuple[str, ...]) -> None:
        if stage.name in done:
            return
        if stage.name in chain:
            raise EdibuildError(f"the stages read each other: {' -> '.join((*chain, stage.name))}")
        for name in stage.upstream:
            if name not in by_name:
                raise EdibuildError(f"stage {stage.name!r} reads {name!r}, which is no stage")
            visit(by_name[name], (*chain, stage.name))
        done.add(stage.name)
        ordered.append(stage)

    for stage in stages:
        visit(stage, ())
    return tuple(ordered)


def closure(stages: Iterable[Stage], targets: Iterable[str]) -> set[str]:
    """The names of `targets` and of every stage they read, directly or not."""
    by_name = {s.name: s for s in stages}
    todo = [t for t in targets if t in by_name]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(by_name[name].upstream)
    return seen


class Pipeline:
    """The built-in stages applied to projects: each project's stages, and which are on."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = in_dependency_order(stages)
        self._project: dict[str, tuple[Stage, ...]] = {}
        self._enabled: dict[str, tuple[Stage, ...]] = {}

    def project_stages(self, project: Project) -> tuple[Stage, ...]:
        """The built-in stages and the project's own (postprocessing), in dependency order."""
        found = self._project.get(project.name)
        if found is None:
            own = user_stages(project, self.stages)
            found = self._project[project.name] = in_dependency_order((*self.stages, *own))
        return found

    def enabled(self, project: Project) -> tuple[Stage, ...]:
        """The stages that run for a project: switched on, and every stage they read too."""
        found = self._enabled.get(project.name)
        if found is None:
            on: dict[str, Stage] = {}
            for stage in self.project_stages(project):
                if all(u in on for u in stage.upstream) and stage.enabled(project):
                    on[stage.name] = stage
            found = self._enabled[project.name] = tuple(on.values())
        return found

    def is_builtin(self, stage: Stage) -> bool:
        """True for a stage of edibuild's pipeline, False for a project's own stage."""
        return stage in self.stages
