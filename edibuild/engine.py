"""Turn projects and stages into doit tasks, and run one stage with the cache.

Each (stage, project) pair becomes the doit task `STAGE:PROJECT`. Its up-to-date check
covers everything its output depends on: upstream output digests (file_dep on the
upstream pointers), plugin file contents (file_dep), the stage's configuration slice and
code version (one config_changed), and that its outputs (and any external state) are
still there. Its action computes the input key, reuses a cache entry when one exists, and
otherwise builds into scratch space and stores the result atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed
from doit.tools import config_changed

from edibuild import explain
from edibuild.errors import EdibuildError, StageFailed
from edibuild.fsutil import digest_json, read_json, sha256_file
from edibuild.project import Json, Project
from edibuild.run import say
from edibuild.stage import Stage, StageContext, Tool
from edibuild.store import Cache, Entry, ProjectArtifacts
from edibuild.userstage import user_stages
from edibuild.values import epoch
from edibuild.workspace import Workspace

DEFAULT_SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z, when a project sets none

TaskDict = dict[str, Any]
# When doit's records differ from the stage manifest (e.g. `doit -a`, a forgotten task).
RERUN_BY_DOIT = "doit's records say so (forced, forgotten, or an edit during the last build)"


def doit_config(workspace: Workspace) -> dict[str, Any]:
    """The DOIT_CONFIG that closes doit's traps (see research/doit-and-style.md 1.11)."""
    return {
        "backend": "sqlite3",
        "dep_file": os.fspath(workspace.state_file),
        "par_type": "thread",
        "default_tasks": [],
        "minversion": "0.37.0",
        "action_string_formatting": "new",
    }


class Described(functools.partial[Any]):
    """A task action that doit prints by what it does, not as `functools.partial(...)`."""

    what = ""

    def __str__(self) -> str:
        return f" {self.what}"  # doit prints str(action)[1:]


def described(what: str, func: Callable[..., Any], *args: Any) -> Described:
    """Bind `args` to `func` as an action doit prints as `what`."""
    action = Described(func, *args)
    action.what = what
    return action


def source_date_epoch(project: Project) -> int:
    """The timestamp outputs are clamped to: the project's, SOURCE_DATE_EPOCH, or a default."""
    export = project.section("export") or {}
    if export.get("source_date_epoch") is not None:
        where = project.where("export", "source_date_epoch")
        return epoch(export["source_date_epoch"], key="export.source_date_epoch", location=where)
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return DEFAULT_SOURCE_DATE_EPOCH
    return epoch(value, key="SOURCE_DATE_EPOCH", location=None)


class Engine:
    """The pipeline applied to a set of projects, as doit task creators and actions."""

    def __init__(
        self, workspace: Workspace, projects: Sequence[Project], stages: Sequence[Stage]
    ) -> None:
        self.workspace = workspace
        self.projects = tuple(projects)
        self.stages = tuple(stages)
        self.cache = Cache(workspace.cache_dir)
        self._project_stages: dict[str, tuple[Stage, ...]] = {}
        self._enabled: dict[str, list[Stage]] = {}
        self._configs: dict[tuple[str, str], Json] = {}

    # -- planning --------------------------------------------------------------------

    def project_stages(self, project: Project) -> tuple[Stage, ...]:
        """The built-in stages followed by the project's own (postprocessing) stages."""
        cached = self._project_stages.get(project.name)
        if cached is None:
            cached = self.stages + user_stages(project, self.stages)
            self._project_stages[project.name] = cached
        return cached

    def enabled_stages(self, project: Project) -> list[Stage]:
        """Stages that run for a project: enabled, with every upstream enabled too."""
        cached = self._enabled.get(project.name)
        if cached is None:
            enabled: dict[str, Stage] = {}
            for stage in self.project_stages(project):
                if all(u in enabled for u in stage.upstream) and stage.enabled(project):
                    enabled[stage.name] = stage
            cached = self._enabled[project.name] = list(enabled.values())
        return list(cached)

    def stage_config(self, project: Project, stage: Stage) -> Json:
        """A stage's configuration slice (computed once per run; validates the section)."""
        key = (project.name, stage.name)
        if key not in self._configs:
            self._configs[key] = stage.config(project)
        return self._configs[key]

    def artifacts(self, project: Project) -> ProjectArtifacts:
        """The artifact directory of a project."""
        return ProjectArtifacts(self.workspace.artifacts_dir, project.name)

    def stage_task(self, project: Project, stage: Stage) -> TaskDict:
        """The doit task dict of one stage of one project."""
        arts = self.artifacts(project)
        slice_ = {
            "stage": stage.name,
            "code": stage.code_version,
            "config": self.stage_config(project, stage),
        }
        return {
            "basename": stage.name,
            "name": project.name,
            "doc": f"{stage.doc}",
            "actions": [functools.partial(self.run_stage, project, stage)],
            "file_dep": [os.fspath(arts.pointer(u)) for u in stage.upstream]
            + [os.fspath(p) for p in stage.plugins(project)],
            "targets": [os.fspath(arts.pointer(stage.name))],
            "uptodate": [config_changed(slice_), functools.partial(self.intact, project, stage)],
            "setup": [f"_preflight:{project.name}"],
            "clean": [
                described(
                    f"remove {stage.name}'s artifacts, cache entry and the state it made",
                    self.clean_stage,
                    project,
                    stage,
                )
            ],
        }

    def image_task(self, project: Project) -> TaskDict:
        """`image:NAME`: every artifact; cleaning it keeps the bootstrap and container stages."""
        arts = self.artifacts(project)
        enabled = self.enabled_stages(project)
        stages = [s for s in enabled if s.in_image]
        outputs = [s for s in enabled if s.image_output]  # the boot test's result too
        return {
            "basename": "image",
            "name": project.name,
            "doc": project.description,
            "actions": [functools.partial(self.report, project)],
            "file_dep": [os.fspath(arts.pointer(s.name)) for s in stages],
            "clean": [
                described(
                    f"remove the image outputs ({', '.join(s.name for s in outputs)})",
                    self.clean_stages,
                    project,
                    outputs,
                )
            ],
            "verbosity": 2,
        }

    def creators(self) -> dict[str, Callable[[], Iterator[TaskDict]]]:
        """doit task creators (`task_<stage>` functions) for every stage and helper."""
        result = {f"task_{s.name}": _creator(self._stage_tasks, s) for s in self.stages}
        result["task_postprocessing"] = _creator(self._user_stage_tasks)
        result["task_image"] = _creator(self._image_tasks)
        result["task_why"] = _creator(self._why_tasks)
        result["task_trim"] = _creator(self._trim_task)
        result["task_config"] = _creator(self._show_tasks, "config")
        result["task_plugins"] = _creator(self._show_tasks, "plugins")
        result["task__preflight"] = _creator(self._preflight_tasks)
        return result

    def _stage_tasks(self, stage: Stage) -> Iterator[TaskDict]:
        yield {"basename": stage.name, "name": None, "doc": stage.doc}
        for project in self.projects:
            if stage in self.enabled_stages(project):
                yield self.stage_task(project, stage)

    def _user_stage_tasks(self) -> Iterator[TaskDict]:
        builtin = {s.name for s in self.stages}
        yield {
            "basename": "postprocessing",
            "name": None,
            "doc": "User stages from projects' postprocessing sections (their own task names)",
        }
        for project in self.projects:
            for stage in self.enabled_stages(project):
                if stage.name not in builtin:
                    yield self.stage_task(project, stage)

    def _image_tasks(self) -> Iterator[TaskDict]:
        yield {"basename": "image", "name": None, "doc": "Build every artifact of a project"}
        for project in self.projects:
            yield self.image_task(project)

    def _show_tasks(self, what: str) -> Iterator[TaskDict]:
        docs = {
            "config": "Print the merged configuration of a project (edi --config)",
            "plugins": "List the plugin files a project uses (edi --plugins)",
        }
        yield {"basename": what, "name": None, "doc": docs[what]}
        for project in self.projects:
            yield {
                "basename": what,
                "name": project.name,
                "doc": docs[what],
                "actions": [functools.partial(show, what, project)],
                "uptodate": [False],
                "verbosity": 2,
            }

    def _why_tasks(self) -> Iterator[TaskDict]:
        doc = "Dry run: which stages `doit image:NAME` would run, and why, in plain words"
        yield {"basename": "why", "name": None, "doc": doc}
        for project in self.projects:
            action = functools.partial(self.why, project)
            yield {
                "basename": "why",
                "name": project.name,
                "doc": doc,
                "actions": [action],
                "uptodate": [False],
                "verbosity": 2,
            }

    def why(self, project: Project) -> None:
        """Print the stages of a project that would run, each with its reasons."""
        targets = {s.name for s in self.enabled_stages(project) if s.in_image}
        steps = explain.plan(self, project, targets)
        if not steps:
            print(f"image:{project.name} is up to date: nothing would run.")
        for stage, reasons in steps:
            print(f"{stage.name}:{project.name} would run:")
            for reason in reasons:
                print(f"  - {reason}")

    def _trim_task(self) -> Iterator[TaskDict]:
        yield {
            "basename": "trim",
            "doc": "Trim the cache to a budget (--budget 20GiB), least recently used first",
            "actions": [self.trim],
            "params": [
                {
                    "name": "budget",
                    "long": "budget",
                    "type": str,
                    "default": os.environ.get("EDIBUILD_CACHE_BUDGET", "50GiB"),
                    "help": "size to trim the cache to (EDIBUILD_CACHE_BUDGET)",
                }
            ],
            "uptodate": [False],
            "verbosity": 2,
        }

    def trim(self, budget: str) -> TaskFailed | None:
        """Trim the cache; what any project's artifacts point at is kept."""
        from edibuild.trim import parse_budget, trim

        try:
            report = trim(self.cache, self.workspace.artifacts_dir, parse_budget(budget))
        except EdibuildError as exc:
            return TaskFailed(str(exc))
        print(
            f"cache {self.cache.root}: {report.before / 1e9:.2f} GB -> "
            f"{report.after / 1e9:.2f} GB; removed {report.entries_removed} entries and "
            f"{report.blobs_removed} blobs; kept what {report.protected} installed "
            "outputs point at"
        )
        return None

    def _preflight_tasks(self) -> Iterator[TaskDict]:
        for project in self.projects:
            yield {
                "basename": "_preflight",
                "name": project.name,
                "doc": "Check root, host tools and emulation before a stage runs",
                "actions": [functools.partial(self.preflight, project)],
                "uptodate": [False],
                "verbosity": 2,
            }

    # -- checks ----------------------------------------------------------------------

    def intact(self, project: Project, stage: Stage) -> bool:
        """Up-to-date probe: the outputs are present and any external state still exists."""
        arts = self.artifacts(project)
        if not arts.intact(stage.name):
            return False
        manifest = read_json(arts.manifest(stage.name)) or {}
        return bool(stage.intact(project, manifest.get("info") or {}))

    def preflight(self, project: Project) -> TaskFailed | None:
        """Fail early, before anything is written, when the host cannot build the project."""
        stages = self.enabled_stages(project)
        try:
            check_root(project, stages)
            check_tools([(s.name, t) for s in stages for t in s.tools(project)])
            arrange_emulation(project)
        except EdibuildError as exc:
            return TaskFailed(str(exc))
        return None

    # -- running ---------------------------------------------------------------------

    def run_stage(self, project: Project, stage: Stage) -> TaskFailed | None:
        """The doit action of a stage task: reuse or build, then install atomically."""
        try:
            self._run_stage(project, stage)
        except EdibuildError as exc:
            return TaskFailed(f"{stage.name}:{project.name}: {exc}")
        except Exception as exc:  # a bug or an unforeseen failure: one message, log the rest
            log = self.artifacts(project).log(stage.name)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as f:
                f.write(traceback.format_exc())
            return TaskFailed(
                f"{stage.name}:{project.name}: unexpected {type(exc).__name__}: {exc}\n"
                f"  the traceback is at the end of {log}"
            )
        return None

    def _run_stage(self, project: Project, stage: Stage) -> None:
        arts = self.artifacts(project)
        inputs, infos, digests = self._upstream(project, stage, arts)
        plugin_files = stage.plugins(project)
        plugins = [sha256_file(p) for p in plugin_files]
        config = self.stage_config(project, stage)
        key = digest_json(
            {
                "stage": stage.name,
                "code": stage.code_version,
                "config": config,
                "plugins": plugins,
                "upstream": digests,
            }
        )
        why = explain.reasons(self, project, stage, will_run=set())
        say(f"{stage.name}:{project.name}: runs because {'; '.join(why) or RERUN_BY_DOIT}")
        started = time.monotonic()
        with self.cache.lock(stage.name, key):
            entry = self.cache.lookup(stage.name, key)
            if entry is not None and not stage.intact(project, entry.info or {}):
                self.cache.forget(stage.name, key)
                entry = None
            reused = entry is not None
            if entry is None:
                entry = self._build(project, stage, key, inputs, infos, arts)
            else:
                say(f"{stage.name}:{project.name}: reused from the cache (key {key[:12]})")
        names = stage.outputs(project)
        entry = dataclasses.replace(
            entry,
            outputs={n: dataclasses.replace(o, file=names[n]) for n, o in entry.outputs.items()},
        )
        manifest = {
            "stage": stage.name,
            "project": project.name,
            "key": key,
            "code_version": stage.code_version,
            "config": config,
            "plugins": {os.fspath(p): d for p, d in zip(plugin_files, plugins, strict=True)},
            "upstream": digests,
            "why": why,
            "info": entry.info,
            "reused": reused,
            "seconds": round(time.monotonic() - started, 3),
            "outputs": {n: o.as_json() for n, o in entry.outputs.items()},
        }
        arts.install(self.cache, entry, manifest)

    def _upstream(
        self, project: Project, stage: Stage, arts: ProjectArtifacts
    ) -> tuple[dict[str, dict[str, Path]], dict[str, Json], dict[str, dict[str, str]]]:
        inputs: dict[str, dict[str, Path]] = {}
        infos: dict[str, Json] = {}
        digests: dict[str, dict[str, str]] = {}
        for up in stage.upstream:
            outputs = arts.outputs(up)
            if outputs is None:
                raise StageFailed(
                    f"the {up} stage has no outputs", hint=f"run `doit {up}:{project.name}` first"
                )
            inputs[up] = {n: arts.dir / o.file for n, o in outputs.items()}
            digests[up] = {n: o.sha256 for n, o in sorted(outputs.items())}
            infos[up] = (read_json(arts.manifest(up)) or {}).get("info") or {}
        return inputs, infos, digests

    def _build(
        self,
        project: Project,
        stage: Stage,
        key: str,
        inputs: Mapping[str, Mapping[str, Path]],
        infos: Mapping[str, Json],
        arts: ProjectArtifacts,
    ) -> Entry:
        log = arts.log(stage.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"# {stage.name}:{project.name} key {key}\n")
        names = stage.outputs(project)
        with self.cache.scratch(stage.name, project.name) as work:
            (work / "out").mkdir()
            ctx = StageContext(
                project=project,
                stage=stage,
                key=key,
                workdir=work,
                log=log,
                inputs=inputs,
                input_info=infos,
                source_date_epoch=source_date_epoch(project),
                output_names=names,
            )
            say(f"{stage.name}:{project.name}: building (log: {log})")
            info = stage.build(ctx)
            if ctx.phases and isinstance(info, dict):  # where the build's time went
                info = {**info, "phases": ctx.phases}
            files = {n: ctx.output(n) for n in names}
            missing = [os.fspath(p) for p in files.values() if not p.is_file()]
            if missing:
                raise StageFailed(f"the stage did not write its outputs: {', '.join(missing)}")
            return self.cache.store(stage.name, key, files, info)

    # -- cleaning and reporting ------------------------------------------------------

    def clean_stage(self, project: Project, stage: Stage, dryrun: bool = False) -> None:
        """Remove a stage's artifacts, its cache entry and external state it created.

        A refusal (a path outside the artifact folder or cache, LXD unreachable) stops
        the clean with one message and exit code 1; doit itself would print a traceback
        and exit 0.
        """
        try:
            self._clean_stage(project, stage, dryrun)
        except EdibuildError as exc:  # doit captures stderr here: Python prints this one
            raise SystemExit(f"edibuild: error: {stage.name}:{project.name}: {exc}") from None

    def _clean_stage(self, project: Project, stage: Stage, dryrun: bool) -> None:
        arts = self.artifacts(project)
        if dryrun:
            arts.removable(stage.name)  # refuses what a real clean would refuse
            outputs = arts.checked_outputs(stage.name) or {}
            for out in outputs.values():
                print(f"{stage.name}:{project.name} - would remove {arts.dir / out.file}")
            return
        key = arts.installed_key(stage.name)
        for path in arts.remove(stage.name):
            print(f"{stage.name}:{project.name} - removed {path}")
        if key is not None:
            self.cache.forget(stage.name, key)
        stage.clean_external(project)

    def clean_stages(self, project: Project, stages: Sequence[Stage], dryrun: bool = False) -> None:
        """Clean several stages of a project (the image outputs, for `clean image:NAME`)."""
        for stage in stages:
            self.clean_stage(project, stage, dryrun=dryrun)

    def report(self, project: Project) -> None:
        """Print the artifacts of a project with their sizes."""
        arts = self.artifacts(project)
        print(f"{project.name}: artifacts in {arts.dir}")
        for stage in self.enabled_stages(project):
            for out in (arts.outputs(stage.name) or {}).values():
                print(f"  {out.file:<40} {out.size / 1e6:10.1f} MB  ({stage.name})")


def _creator(
    method: Callable[..., Iterator[TaskDict]], *args: Any
) -> Callable[[], Iterator[TaskDict]]:
    """Wrap a bound method as a plain function: doit only collects functions named task_*."""

    def create() -> Iterator[TaskDict]:
        return method(*args)

    return create


def show(what: str, project: Project) -> None:
    """Print a project's merged configuration or its plugin list."""
    from edibuild.config import describe_plugins, dump_config

    print(dump_config(project) if what == "config" else describe_plugins(project))


def check_root(project: Project, stages: Sequence[Stage]) -> None:
    """Builds need root today (debootstrap, LXD, file owners in images): say so clearly."""
    needing = [s.name for s in stages if s.needs_root]
    if needing and os.geteuid() != 0:
        raise EdibuildError(
            f"building {project.name} needs root (stages: {', '.join(needing)})",
            hint="run it with sudo; rootless builds (mmdebstrap unshare, the lxd group) "
            "are on the roadmap",
        )


def check_tools(needs: Sequence[tuple[str, Tool]]) -> None:
    """Raise ToolMissing naming every missing command, its stage and its Debian package."""
    from edibuild.errors import ToolMissing

    missing = [(stage, t) for stage, t in needs if shutil.which(t.command) is None]
    if not missing:
        return
    lines = [f"{t.command} (needed by {stage}, Debian package {t.package})" for stage, t in missing]
    packages = " ".join(sorted({t.package for _, t in missing}))
    raise ToolMissing(
        "missing host tools: " + "; ".join(dict.fromkeys(lines)),
        hint=f"install them with: apt-get install {packages}",
    )


def arrange_emulation(project: Project) -> None:
    """Make sure foreign-architecture binaries run (qemu-user-static through binfmt)."""
    from edibuild.host.emulation import ensure_emulation

    for sentence in ensure_emulation(project.bootstrap.architecture):
        say(sentence)


def fail_at_load(error: EdibuildError) -> None:
    """Report a bad project before anything runs, and exit non-zero."""
    print(f"edibuild: error: {error}", file=sys.stderr)
    raise SystemExit(3)
