"""Run one stage of one project: reuse the cache entry of its inputs, or build and store.

The stage's inputs are gathered once (edibuild/engine/inputs.py): their key finds the cache
entry, and they are recorded in the manifest and explain why the stage ran. A build
runs in scratch space; its outputs move into the cache under their digest, and the
pointer doit checks is written last (store.ProjectArtifacts.install).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from doit.exceptions import TaskFailed

from edibuild import interrupt, orphans
from edibuild.config.project import Project
from edibuild.data import Json, mapping
from edibuild.engine import budget, explain
from edibuild.engine.inputs import StageInputs
from edibuild.engine.session import Session
from edibuild.engine.stage import Stage, StageContext
from edibuild.engine.uptodate import external_state
from edibuild.errors import EdibuildError, StageFailed
from edibuild.lazy import lazy_import
from edibuild.run import say
from edibuild.store.artifacts import ProjectArtifacts
from edibuild.store.cache import Cache, Entry
from edibuild.store.fsutil import read_json, remove_file, sha256_file

if TYPE_CHECKING:
    from edibuild import space
else:  # only a build needs it, not planning or a no-op
    space = lazy_import("edibuild.space")

# When doit's records differ from the stage manifest (e.g. `doit -a`, a forgotten task).
RERUN_BY_DOIT = "doit's records say so (forced, forgotten, or an edit during the last build)"


def run_stage(session: Session, project: Project, stage: Stage) -> TaskFailed | None:
    """The doit action of a stage task: one message on failure, the traceback in the log."""
    log = session.artifacts(project).log(stage.name)
    where = f"{stage.name}:{project.name}"
    try:
        with interrupt.building():
            _run(session, project, stage)
    except KeyboardInterrupt:
        say(f"{where}: interrupted; its partial work is removed (log: {log})")
        raise
    except Exception as exc:
        if interrupt.requested():  # a command ended by the interrupt, in a worker thread
            say(f"{where}: interrupted; its partial work is removed (log: {log})")
            raise KeyboardInterrupt(str(exc)) from None
        if space.is_full(exc):
            return TaskFailed(f"{where}: {_full(session, project, stage)}\n  log: {log}")
        if isinstance(exc, EdibuildError):
            return TaskFailed(f"{where}: {exc}")
        _append(log, traceback.format_exc())  # a bug or an unforeseen failure
        return TaskFailed(
            f"{where}: unexpected {type(exc).__name__}: {exc}\n"
            f"  the traceback is at the end of {log}"
        )
    return None


def _append(log: Path, text: str) -> None:
    """Add to a stage's log if the disk lets us (the message goes to the user anyway)."""
    with contextlib.suppress(OSError):
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            f.write(text)


def _full(session: Session, project: Project, stage: Stage) -> str:
    """The message for a full disk: which folder, and how much the stage needs there."""
    arts = session.artifacts(project)
    cache = session.cache
    manifest = read_json(arts.manifest(stage.name))
    info = manifest.get("info") if isinstance(manifest, dict) else None
    paths: dict[str, dict[str, Path]] = {}
    for up in stage.upstream:
        outputs = arts.outputs(up) or {}
        paths[up] = {n: arts.dir / o.file for n, o in outputs.items()}
    need = space.estimate(
        info, space.newest_entries(cache.root / "keys" / stage.name), space.sizes(paths)
    )
    copies = space.free_bytes(arts.dir) != space.free_bytes(cache.root)
    places = space.places(cache.scratch_root, cache.root, arts.dir, need, copies)
    message, hint = space.full_message(places, need)
    return f"{message}\n  hint: {hint}"


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


def _changed_inputs(project: Project, stage: Stage, arts: ProjectArtifacts) -> list[str]:
    """The upstream stages whose installed files no longer hash to their pointer's digests.

    A build reads its inputs, so it hashes them first (about a second per GB): an
    artifact written to in place since it was installed (through its hard link the
    cache's blob too) must not end up in this stage's outputs. One whose ctime is still
    the one recorded at its installation was not written to: it is not read again.
    """
    changed = []
    for up in stage.upstream:
        if arts.unchanged(up):
            continue
        for out in (arts.outputs(up) or {}).values():
            try:
                same = sha256_file(arts.dir / out.file) == out.sha256
            except OSError:
                same = False
            if not same:
                say(f"{stage.name}:{project.name}: its input {out.file} ({up}) was changed on "
                    "disk after it was installed; it is built again first")  # fmt: skip
                changed.append(up)
                break
    return changed


def _repair(session: Session, project: Project, stages: Sequence[str]) -> None:
    """Build upstream stages again whose installed outputs were changed on disk."""
    for name in stages:
        up = next(s for s in session.pipeline.enabled(project) if s.name == name)
        arts = session.artifacts(project)
        remove_file(arts.pointer(name), arts.dir)  # never taken as finished again
        _run(session, project, up)


def _run(session: Session, project: Project, stage: Stage, repairs: int = 2) -> None:
    arts = session.artifacts(project)
    upstream = _upstream_paths(project, stage, arts)  # StageFailed before anything else
    inputs = session.inputs(project, stage, session.installed_upstream(project, stage))
    why = _reasons(project, stage, arts, inputs)
    say(f"{stage.name}:{project.name}: runs because {'; '.join(why) or RERUN_BY_DOIT}")
    started = time.monotonic()
    _recover(session.cache, project, stage)
    found = _reuse_or_build(session, project, stage, inputs, upstream, repairs)
    if found is None:  # its inputs were rebuilt (their digests may differ): start again
        _run(session, project, stage, repairs - 1)
        return
    entry, reused = found
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
    arts.install(session.cache, entry, manifest)
    if not reused:  # the new outputs are installed, so protected: fit the budget
        budget.keep_within(session.cache, session.workspace.artifacts_dir)


def _reasons(
    project: Project, stage: Stage, arts: ProjectArtifacts, inputs: StageInputs
) -> list[str]:
    """Why the stage runs, in words, from its installed manifest and the inputs of now."""
    manifest = read_json(arts.manifest(stage.name))
    intact = arts.intact(stage.name)
    info = manifest.get("info") if isinstance(manifest, dict) else None
    external = external_state(project, stage, info or {}) if intact else ()
    return explain.reasons(manifest, inputs, outputs_intact=intact, external=external)


def _reuse_or_build(
    session: Session,
    project: Project,
    stage: Stage,
    inputs: StageInputs,
    upstream: tuple[dict[str, dict[str, Path]], dict[str, Mapping[str, Json]]],
    repairs: int,
) -> tuple[Entry, bool] | None:
    """The stage's cache entry and whether it was reused; None when its inputs were repaired.

    Under the key's lock, so a second build of the same inputs waits and then reuses.
    """
    cache = session.cache
    with cache.lock(stage.name, inputs.key):
        entry = cache.lookup(stage.name, inputs.key)
        if entry is not None and not stage.intact(project, mapping(entry.info)):
            cache.forget(stage.name, inputs.key)
            entry = None
        if entry is not None:
            say(f"{stage.name}:{project.name}: reused from the cache (key {inputs.key[:12]})")
            return entry, True
        changed = _changed_inputs(project, stage, session.artifacts(project))
        if changed and repairs:
            _repair(session, project, changed)
            return None
        if changed:
            raise StageFailed(
                f"the inputs from {', '.join(changed)} still differ from their digests "
                "after building them again",
                hint="remove the artifact folder of the project and run the build again",
            )
        paths, infos = upstream
        return _build(project, stage, inputs, paths, infos, session), False


def _recover(cache: Cache, project: Project, stage: Stage) -> None:
    """Remove what a killed earlier run left: its processes, then its scratch space.

    Done before the cache lookup, so a run that finds its result in the cache (a killed
    run may have stored it) removes the leftovers too.
    """
    for orphan in orphans.end_orphans():
        say(f"{stage.name}:{project.name}: ended {orphan}")
    for path in cache.remove_stale_scratch(stage.name, project.name):
        say(f"{stage.name}:{project.name}: removed scratch space {path} left by an earlier run")


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
    with session.cache.scratch(stage.name, project.name) as work, space.Peak(work) as peak:
        (work / "out").mkdir()
        (work / "tmp").mkdir()  # TMPDIR of the stage's commands
        ctx = StageContext(
            project=project,
            stage=stage,
            key=inputs.key,
            workdir=work,
            log=log,
            inputs=paths,
            input_info=infos,
            source_date_epoch=inputs.epoch,
            output_names=names,
        )
        say(f"{stage.name}:{project.name}: building (log: {log})")
        info = stage.build(ctx)
        files = {n: ctx.output(n) for n in names}
        missing = [os.fspath(p) for p in files.values() if not p.is_file()]
        if missing:
            raise StageFailed(f"the stage did not write its outputs: {', '.join(missing)}")
        if isinstance(info, dict):  # where the build's time and space went
            written = sum(p.stat().st_size for p in files.values())
            info = {**info, "space": {"scratch": peak.measure(), "outputs": written}}
            if ctx.phases:
                info["phases"] = ctx.phases
        interrupt.check()  # a worker thread stops here too: nothing more is stored
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
