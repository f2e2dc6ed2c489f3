"""Run one stage of one project: reuse the cache entry of its inputs, or build and store.

The stage's inputs are gathered once (edibuild/engine/inputs.py): their key finds the cache
entry, and they are recorded in the manifest and explain why the stage ran. A build
runs in scratch space; its outputs move into the cache under their digest, and the
pointer doit checks is written last (store.ProjectArtifacts.install).
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from doit.exceptions import TaskFailed

from edibuild.config.project import Project
from edibuild.data import Json, mapping
from edibuild.engine import budget, explain
from edibuild.engine.inputs import StageInputs
from edibuild.engine.session import Session
from edibuild.engine.stage import Stage, StageContext
from edibuild.errors import EdibuildError, StageFailed
from edibuild.image.reproducible import source_date_epoch
from edibuild.run import say
from edibuild.store.artifacts import ProjectArtifacts
from edibuild.store.cache import Entry
from edibuild.store.fsutil import read_json

# When doit's records differ from the stage manifest (e.g. `doit -a`, a forgotten task).
RERUN_BY_DOIT = "doit's records say so (forced, forgotten, or an edit during the last build)"


def run_stage(session: Session, project: Project, stage: Stage) -> TaskFailed | None:
    """The doit action of a stage task: one message on failure, the traceback in the log."""
    try:
        _run(session, project, stage)
    except EdibuildError as exc:
        return TaskFailed(f"{stage.name}:{project.name}: {exc}")
    except Exception as exc:  # a bug or an unforeseen failure: one message, log the rest
        log = session.artifacts(project).log(stage.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            f.write(traceback.format_exc())
        return TaskFailed(
            f"{stage.name}:{project.name}: unexpected {type(exc).__name__}: {exc}\n"
            f"  the traceback is at the end of {log}"
        )
    return None


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
    return not explain.external_state(project, stage, manifest.get("info") or {})


def _upstream_paths(
    project: Project, stage: Stage, arts: ProjectArtifacts
) -> tuple[dict[str, dict[str, Path]], dict[str, Mapping[str, Json]]]:
    """The installed upstream outputs (paths) and their stages' info; StageFailed if missing."""
    paths: dict[str, dict[str, Path]] = {}
    infos: dict[str, Mapping[str, Json]] = {}
    for up in stage.upstream:
        outputs = arts.outputs(up)
        if outputs is None:
            raise StageFailed(
                f"the {up} stage has no outputs", hint=f"run `doit {up}:{project.name}` first"
            )
        paths[up] = {n: arts.dir / o.file for n, o in outputs.items()}
        infos[up] = mapping(mapping(read_json(arts.manifest(up))).get("info"))
    return paths, infos


def _run(session: Session, project: Project, stage: Stage) -> None:
    arts = session.artifacts(project)
    paths, infos = _upstream_paths(project, stage, arts)
    inputs = session.inputs(project, stage, session.installed_upstream(project, stage))
    manifest = read_json(arts.manifest(stage.name))
    intact = arts.intact(stage.name)
    info = manifest.get("info") if isinstance(manifest, dict) else None
    why = explain.reasons(
        manifest,
        inputs,
        outputs_intact=intact,
        external=explain.external_state(project, stage, info or {}) if intact else (),
    )
    say(f"{stage.name}:{project.name}: runs because {'; '.join(why) or RERUN_BY_DOIT}")
    started = time.monotonic()
    cache = session.cache
    with cache.lock(stage.name, inputs.key):
        entry = cache.lookup(stage.name, inputs.key)
        if entry is not None and not stage.intact(project, mapping(entry.info)):
            cache.forget(stage.name, inputs.key)
            entry = None
        reused = entry is not None
        if entry is None:
            entry = _build(project, stage, inputs, paths, infos, session)
        else:
            say(f"{stage.name}:{project.name}: reused from the cache (key {inputs.key[:12]})")
    names = stage.outputs(project)
    entry = dataclasses.replace(
        entry,
        outputs={n: dataclasses.replace(o, file=names[n]) for n, o in entry.outputs.items()},
    )
    manifest = {
        "stage": stage.name,
        "project": project.name,
        **inputs.as_manifest(),
        "why": why,
        "info": entry.info,
        "reused": reused,
        "seconds": round(time.monotonic() - started, 3),
        "outputs": {n: o.as_json() for n, o in entry.outputs.items()},
    }
    arts.install(cache, entry, manifest)
    if not reused:  # the new outputs are installed, so protected: fit the budget
        budget.keep_within(cache, session.workspace.artifacts_dir)


def _build(
    project: Project,
    stage: Stage,
    inputs: StageInputs,
    paths: Mapping[str, Mapping[str, Path]],
    infos: Mapping[str, Mapping[str, Json]],
    session: Session,
) -> Entry:
    arts = session.artifacts(project)
    log = arts.log(stage.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"# {stage.name}:{project.name} key {inputs.key}\n")
    names = stage.outputs(project)
    with session.cache.scratch(stage.name, project.name) as work:
        (work / "out").mkdir()
        ctx = StageContext(
            project=project,
            stage=stage,
            key=inputs.key,
            workdir=work,
            log=log,
            inputs=paths,
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
        return session.cache.store(stage.name, inputs.key, files, info)


def clean_stage(session: Session, project: Project, stage: Stage, dryrun: bool = False) -> None:
    """Remove a stage's artifacts, its cache entry and external state it created.

    A refusal (a path outside the artifact folder or cache, LXD unreachable) stops the
    clean with one message and exit code 1; doit itself would print a traceback and
    exit 0.
    """
    try:
        _clean(session, project, stage, dryrun)
    except EdibuildError as exc:  # doit captures stderr here: Python prints this one
        raise SystemExit(f"edibuild: error: {stage.name}:{project.name}: {exc}") from None


def _clean(session: Session, project: Project, stage: Stage, dryrun: bool) -> None:
    arts = session.artifacts(project)
    if dryrun:
        arts.removable(stage.name)  # refuses what a real clean would refuse
        for out in (arts.checked_outputs(stage.name) or {}).values():
            print(f"{stage.name}:{project.name} - would remove {arts.dir / out.file}")
        return
    key = arts.installed_key(stage.name)
    for path in arts.remove(stage.name):
        print(f"{stage.name}:{project.name} - removed {path}")
    if key is not None:
        session.cache.forget(stage.name, key)
    stage.clean_external(project)


def clean_stages(
    session: Session, project: Project, stages: Sequence[Stage], dryrun: bool = False
) -> None:
    """Clean several stages of a project (the image outputs, for `clean image:NAME`)."""
    for stage in stages:
        clean_stage(session, project, stage, dryrun=dryrun)
