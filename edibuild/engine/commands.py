"""The helper tasks' actions: why, config, plugins, trim, info in words, preflight, report."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from doit.exceptions import TaskFailed

from edibuild.config.project import Project
from edibuild.doit_ext import Explanation
from edibuild.engine.budget import budget_text
from edibuild.engine.pipeline import closure
from edibuild.engine.session import Session
from edibuild.engine.stage import Stage, Tool
from edibuild.errors import EdibuildError, ToolMissing
from edibuild.host import toolpath
from edibuild.lazy import lazy_import
from edibuild.run import say

if TYPE_CHECKING:
    from edibuild.engine import explain
else:  # `why` and `doit info` explain; a no-op's report does not
    explain = lazy_import("edibuild.engine.explain")

TRIM_HELP = """\
doit trim [--budget SIZE] [--dry-run]

Trim the artifact cache to SIZE (20GiB unless EDIBUILD_CACHE_BUDGET says otherwise),
least recently used entries first. What any project's installed artifacts point at is
never removed. Without --budget, only says what a trim would remove (a dry run).
Every build trims by itself when the cache is over the budget (EDIBUILD_CACHE_BUDGET=off
turns that off); entries used in the last 10 minutes stay there.
"""


def steps(session: Session, project: Project, targets: Sequence[str]) -> list[explain.Step]:
    """The stages a build of `targets` would not skip, with their reasons."""
    enabled = session.pipeline.enabled(project)
    needed = closure(enabled, targets)
    return explain.plan(
        project,
        [s for s in enabled if s.name in needed],
        session.artifacts(project),
        session.cache,
        lambda stage, upstream: session.inputs(project, stage, upstream),
    )


def why(session: Session, project: Project) -> None:
    """Print the stages `doit image:NAME` would run (or restore), each with its reasons."""
    targets = [s.name for s in session.pipeline.enabled(project) if s.in_image]
    found = steps(session, project, targets)
    if not found:
        print(f"image:{project.name} is up to date: nothing would run.")
    for step in found:
        print(step.headline(project.name))
        for reason in step.reasons:
            print(f"  - {reason}")


def describe(session: Session, task: str) -> Explanation | None:
    """`doit info STAGE:NAME` in words (None for tasks that are not stages of a project)."""
    stage_name, _, project_name = task.partition(":")
    project = session.project(project_name)
    if project is None:
        return None
    stage = next((s for s in session.pipeline.enabled(project) if s.name == stage_name), None)
    if stage is None:
        return None
    step = next((s for s in steps(session, project, [stage.name]) if s.stage is stage), None)
    arts = session.artifacts(project)
    lines = [f"{task}: {stage.doc}"]
    if step is None:
        lines.append("status: up to date (doit info exits 0)")
    else:
        lines.append(f"status: {step.verdict} (doit info exits 1)")
        lines += [f"  - {reason}" for reason in step.reasons]
    for out in (arts.outputs(stage.name) or {}).values():
        lines.append(f"output: {arts.dir / out.file} ({out.size / 1e6:.1f} MB)")
    if arts.manifest(stage.name).exists():
        lines.append(f"manifest: {arts.manifest(stage.name)}")
    if arts.log(stage.name).exists():
        lines.append(f"log: {arts.log(stage.name)}")
    return Explanation(step is None, tuple(lines))


def show(what: str, project: Project) -> None:
    """Print a project's merged configuration (YAML) or its plugin list."""
    from edibuild.config import describe_plugins, dump_config

    sys.stdout.write(dump_config(project) if what == "config" else describe_plugins(project))


def trim(session: Session, budget: str, dry_run: bool, help: bool) -> TaskFailed | None:
    """Trim the cache (a dry run without --budget); what projects' artifacts point at stays."""
    from edibuild.store.trim import parse_budget, trim

    if help:
        print(TRIM_HELP, end="")
        return None
    size = budget or budget_text()
    dry_run = dry_run or not budget
    try:
        report = trim(
            session.cache, session.workspace.artifacts_dir, parse_budget(size), dry_run=dry_run
        )
    except EdibuildError as exc:
        return TaskFailed(str(exc))
    verb = "would remove" if dry_run else "removed"
    print(
        f"cache {session.cache.root}: {report.before / 1e9:.2f} GB; to fit {size} it "
        f"{verb} {report.entries_removed} entries and {report.blobs_removed} blobs "
        f"({(report.before - report.after) / 1e9:.2f} GB); kept what "
        f"{report.protected} installed outputs point at"
    )
    if not budget:
        print(f"(a dry run: `doit trim --budget {size}` trims)")
    return None


def report(session: Session, project: Project) -> None:
    """Print the artifacts of a project with their sizes."""
    arts = session.artifacts(project)
    print(f"{project.name}: artifacts in {arts.dir}")
    for stage in session.pipeline.enabled(project):
        for out in (arts.outputs(stage.name) or {}).values():
            print(f"  {out.file:<40} {out.size / 1e6:10.1f} MB  ({stage.name})")


def preflight(session: Session, project: Project) -> TaskFailed | None:
    """Fail early, before anything is written, when the host cannot build the project."""
    stages = session.pipeline.enabled(project)
    try:
        check_root(project, stages)
        check_tools([(s.name, t) for s in stages for t in s.tools(project)])
        arrange_emulation(project)
    except EdibuildError as exc:
        return TaskFailed(str(exc))
    return None


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
    missing = [(stage, t) for stage, t in needs if toolpath.find(t.command) is None]
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
