"""Turn a session's projects and stages into doit tasks (data only; the work is elsewhere).

Each (stage, project) pair becomes the task `STAGE:PROJECT`. Its up-to-date check
covers everything its output depends on: the upstream pointers (file_dep), the plugin
files (file_dep; those the stage parses as YAML, the playbooks, by what they say:
ParsedFiles), the stage's configuration slice and code version (one config_changed),
and that its outputs and external state are still there (edibuild.engine.uptodate). The
actions are edibuild.engine.build (stages: loaded when one runs) and
edibuild.engine.commands (helpers).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from edibuild.config.project import Project
from edibuild.doit_ext import Catalog
from edibuild.doit_ext.reporter import Reporter
from edibuild.engine import commands
from edibuild.engine.session import Session
from edibuild.engine.stage import Stage
from edibuild.engine.uptodate import outputs_intact
from edibuild.image.reproducible import source_date_epoch
from edibuild.store.workspace import Workspace
from edibuild.store.yamldigest import yaml_digest

TaskDict = dict[str, Any]
HELPERS = {
    "image": "Build every artifact of a project (not its boot test or dev container)",
    "why": "Dry run: which stages `doit image:NAME` would run, and why, in plain words",
    "config": "Print the merged configuration of a project as YAML (edi --config)",
    "plugins": "List the plugin files a project uses (edi --plugins)",
    "postprocessing": "User stages from projects' postprocessing sections (their own names)",
    "trim": "Trim the cache to a budget, least recently used first (doit trim --help)",
}
# doit captures a task's output by swapping sys.stdout and sys.stderr, process-wide: two
# tasks in threads (`-n 2`) swap them under each other and output goes missing (the
# artifact list of `image:NAME`). edibuild's tasks write their logs to files and tell the
# user on stderr, so nothing is captured and nothing is swapped.
UNCAPTURED = {"capture": False}
QUIET = {"edibuild_title": False}  # the task's output is the answer: no doit title line


# Tasks doit runs at once by default (`-n 1` for one at a time): a project's mender
# artifact is written while its disk image and block map are (8 s of a rebuild's 60 here).
PARALLEL = 2


def doit_config(workspace: Workspace) -> dict[str, Any]:
    """The DOIT_CONFIG that closes doit's traps (see research/doit-and-style.md 1.11)."""
    return {
        "backend": "sqlite3",
        "dep_file": os.fspath(workspace.state_file),
        "par_type": "thread",
        "num_process": PARALLEL,
        "default_tasks": [],
        "minversion": "0.37.0",
        "action_string_formatting": "new",
        "reporter": Reporter,
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


class ParsedFiles:
    """doit's up-to-date check of the plugin files a stage parses as YAML (playbooks).

    As file_deps doit would compare their bytes, and a comment-only edit would run the
    task although its key, which follows what a playbook says, is the same. This check
    compares the digests of edibuild/store/yamldigest.py with those of the last
    successful run (kept in doit's state like config_changed's value). A file whose
    size, mtime and inode are those recorded with its digest is not parsed again (the
    shortcut doit's own file_dep check takes before it hashes).
    """

    KEY = "edibuild_parsed_files"
    STAMPS = "edibuild_parsed_stamps"

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = tuple(files)
        self._digests: dict[str, str] | None = None
        self._stamps: dict[str, list[int]] = {}

    def digests(self, known: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Each file's digest of what it says, computed once (when doit checks); `known`
        is the last successful run's values, whose digests stand while a file's stamp does."""
        if self._digests is None:
            saved = (known or {}).get(self.KEY) or {}
            stamps = (known or {}).get(self.STAMPS) or {}
            self._digests = {}
            for path in self.files:
                name = os.fspath(path)
                stamp = _stamp(path)
                self._stamps[name] = stamp
                same = stamp and stamps.get(name) == stamp and isinstance(saved.get(name), str)
                self._digests[name] = saved[name] if same else _digest_or_missing(path)
        return self._digests

    def configure_task(self, task: Any) -> None:
        """Have doit save the digests with the task's values after a successful run."""
        task.value_savers.append(lambda: {self.KEY: self.digests(), self.STAMPS: self._stamps})

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        """True when every file says what it said at the last successful run."""
        return values.get(self.KEY) == self.digests(values)

    def __repr__(self) -> str:
        return f"ParsedFiles({[os.fspath(p) for p in self.files]!r})"


def _stamp(path: Path) -> list[int]:
    """Size, mtime and inode of a file ([] when it cannot be read: always parsed)."""
    try:
        st = path.stat()
    except OSError:
        return []
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _digest_or_missing(path: Path) -> str:
    try:
        return yaml_digest(path)
    except OSError:
        return "missing"


def stage_task(session: Session, project: Project, stage: Stage) -> TaskDict:
    """The doit task dict of one stage of one project."""
    arts = session.artifacts(project)
    slice_ = {
        "stage": stage.name,
        "code": stage.code_version,
        "config": session.stage_config(project, stage),
        "epoch": source_date_epoch(project),  # in the key too (engine/inputs.py)
    }
    parsed = stage.parsed_plugins(project)
    uptodate: list[Any] = [config_changed(slice_)]
    if parsed:
        uptodate.append(ParsedFiles(parsed))
    return {
        "basename": stage.name,
        "name": project.name,
        "doc": stage.doc,
        "actions": [functools.partial(_run_stage, session, project, stage)],
        "file_dep": [os.fspath(arts.pointer(u)) for u in stage.upstream]
        + [os.fspath(p) for p in stage.plugins(project) if p not in parsed],
        "targets": [os.fspath(arts.pointer(stage.name))],
        "uptodate": [
            *uptodate,
            functools.partial(outputs_intact, session, project, stage),
        ],
        "setup": [f"_preflight:{project.name}"],
        "clean": [
            described(
                f"remove {stage.name}'s artifacts, cache entry and the state it made",
                _clean_stage,
                session,
                project,
                stage,
            )
        ],
    }


# The build (and what it imports) loads when a stage runs or is cleaned, not to plan.
def _run_stage(session: Session, project: Project, stage: Stage) -> Any:
    from edibuild.engine import build

    return build.run_stage(session, project, stage)


def _clean_stage(session: Session, project: Project, stage: Stage, dryrun: bool = False) -> Any:
    from edibuild.engine import build  # doit passes `dryrun` to a clean action that takes it

    return build.clean_stage(session, project, stage, dryrun)


def _clean_stages(
    session: Session, project: Project, stages: Sequence[Stage], dryrun: bool = False
) -> Any:
    from edibuild.engine import build

    return build.clean_stages(session, project, stages, dryrun)


def image_task(session: Session, project: Project) -> TaskDict:
    """`image:NAME`: every artifact; cleaning it keeps the bootstrap and container stages."""
    arts = session.artifacts(project)
    enabled = session.pipeline.enabled(project)
    outputs = [s for s in enabled if s.image_output]  # the boot test's result too
    return {
        "basename": "image",
        "name": project.name,
        "doc": project.description,
        "actions": [functools.partial(commands.report, session, project)],
        "file_dep": [os.fspath(arts.pointer(s.name)) for s in enabled if s.in_image],
        "clean": [
            described(
                f"remove the image outputs ({', '.join(s.name for s in outputs)})",
                _clean_stages,
                session,
                project,
                outputs,
            )
        ],
        "verbosity": 2,
    }


def _group(name: str, doc: str) -> TaskDict:
    return {"basename": name, "name": None, "doc": doc}


def _answer(basename: str, project: Project, action: Callable[[], Any]) -> TaskDict:
    """A helper task that prints an answer about a project and never counts as done."""
    return {
        "basename": basename,
        "name": project.name,
        "doc": HELPERS[basename],
        "actions": [action],
        "uptodate": [False],
        "verbosity": 2,
        "meta": QUIET,
    }


def _stage_tasks(session: Session, stage: Stage) -> Iterator[TaskDict]:
    yield _group(stage.name, stage.doc)
    for project in session.projects:
        if stage in session.pipeline.enabled(project):
            yield stage_task(session, project, stage)


def _user_stage_tasks(session: Session) -> Iterator[TaskDict]:
    yield _group("postprocessing", HELPERS["postprocessing"])
    for project in session.projects:
        for stage in session.pipeline.enabled(project):
            if not session.pipeline.is_builtin(stage):
                yield stage_task(session, project, stage)


def _image_tasks(session: Session) -> Iterator[TaskDict]:
    yield _group("image", HELPERS["image"])
    for project in session.projects:
        yield image_task(session, project)


def _why_tasks(session: Session) -> Iterator[TaskDict]:
    yield _group("why", HELPERS["why"])
    for project in session.projects:
        yield _answer("why", project, functools.partial(commands.why, session, project))


def _show_tasks(what: str, session: Session) -> Iterator[TaskDict]:
    yield _group(what, HELPERS[what])
    for project in session.projects:
        yield _answer(what, project, functools.partial(commands.show, what, project))


def _param(name: str, kind: type, default: Any, help: str) -> dict[str, Any]:
    """A task option `--NAME` (doit passes it to the action as NAME with _ for -)."""
    return {"name": name.replace("-", "_"), "long": name, "type": kind, "default": default,
            "help": help}  # fmt: skip


def _trim_task(session: Session) -> Iterator[TaskDict]:
    yield {
        "basename": "trim",
        "doc": HELPERS["trim"],
        "actions": [functools.partial(commands.trim, session)],
        "params": [
            _param("budget", str, "", "size to trim the cache to (20GiB, EDIBUILD_CACHE_BUDGET)"),
            _param("dry-run", bool, False, "only say what would be removed"),
            _param("help", bool, False, "explain trim"),
        ],
        "uptodate": [False],
        "verbosity": 2,
        "meta": QUIET,
    }


def _preflight_tasks(session: Session) -> Iterator[TaskDict]:
    for project in session.projects:
        yield {
            "basename": "_preflight",
            "name": project.name,
            "doc": "Check root, host tools and emulation before a stage runs",
            "actions": [functools.partial(commands.preflight, session, project)],
            "uptodate": [False],
            "verbosity": 2,
        }


def _creator(
    make: Callable[..., Iterator[TaskDict]], *args: Any
) -> Callable[[], Iterator[TaskDict]]:
    """Wrap a task generator as a plain function: doit only collects functions named task_*."""

    def create() -> Iterator[TaskDict]:
        for task in make(*args):
            task.setdefault("io", UNCAPTURED)
            yield task

    return create


def creators(session: Session) -> dict[str, Callable[[], Iterator[TaskDict]]]:
    """doit task creators (`task_<name>` functions) for every stage and helper."""
    result = {f"task_{s.name}": _creator(_stage_tasks, session, s) for s in session.pipeline.stages}
    result["task_postprocessing"] = _creator(_user_stage_tasks, session)
    result["task_image"] = _creator(_image_tasks, session)
    result["task_why"] = _creator(_why_tasks, session)
    result["task_trim"] = _creator(_trim_task, session)
    result["task_config"] = _creator(_show_tasks, "config", session)
    result["task_plugins"] = _creator(_show_tasks, "plugins", session)
    result["task__preflight"] = _creator(_preflight_tasks, session)
    return result


def catalog(session: Session) -> Catalog:
    """What `doit list` and `doit info` show about this session's stages and projects."""
    return Catalog(
        stages=[(s.name, s.doc) for s in session.pipeline.stages],
        helpers=list(HELPERS.items()),
        projects={p.name: p.description for p in session.projects},
        explain=functools.partial(commands.describe, session),
    )
