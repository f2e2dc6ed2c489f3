"""Run one cell of the fault matrix: prepare, inject the fault, check, recover, check again.

What must hold after every fault (checked here, not by eye):
- the next plain build (`doit image:NAME`, and the stage's own task for the boot test and
  the dev container) completes, and its outputs equal those of the reference build that
  never failed (the same digests for the stages that are bit-reproducible);
- nothing from the failed run is taken as finished: every installed output holds the
  bytes its pointer names, every cache entry's blobs their digests; a corrupted blob is
  caught before use, and its bytes end up nowhere;
- nothing is left: LXD containers, profiles, images, proxy devices of the run, mounts,
  loop devices, scratch space, temporary files, processes (apt, qemu, ...), held locks;
  the decoys (the user's own LXD objects) untouched;
- one clear message for the fault (no traceback) naming the stage's log.

This module is the one place that lists the fault kinds (`run_cell`) and runs a session;
the shared state is in harness.py, the checks in checks.py, each fault kind in a module of
its own (signals, space, network, concurrency, corruption).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edibuild.lxd import aptproxyd
from tests.faults import probes
from tests.faults.checkout import STAGES, Checkout, copy_projects, recovery_tasks
from tests.faults.concurrency import second_doit, two_checkouts
from tests.faults.corruption import corrupt_fault
from tests.faults.decoys import Decoys
from tests.faults.harness import DEFAULT_SECONDS, Cellrun, Context, P, Reference
from tests.faults.matrix import Cell, Outcome
from tests.faults.network import lxd_fault, mirror_fault
from tests.faults.signals import signal_fault
from tests.faults.space import space_fault

__all__ = ["DEFAULT_SECONDS", "Context", "Reference", "detach", "run_cell", "session"]


def run_cell(ctx: Context, cell: Cell, seed: int) -> Outcome:
    """One run of a cell with its own seed; whatever happens, its folder is cleaned up."""
    outcome = Outcome(cell, seed)
    run = Cellrun(ctx, cell, random.Random(seed), ctx.folder(cell), outcome)
    run.mm_before = probes.mmdebstrap_dirs()
    started = time.monotonic()
    ctx.say(f"faults: {cell.stage} / {cell.fault} (seed {seed}) in {run.root}")
    try:
        fault = cell.fault
        if fault in ("SIGKILL", "SIGTERM", "SIGINT"):
            signal_fault(run, signal.Signals[fault])
        elif fault.endswith("-n 2"):
            signal_fault(run, signal.Signals[fault.split()[0]], parallel=True)
        elif fault.startswith("full "):
            space_fault(run, fault.split()[1])
        elif fault == "LXD stopped":
            lxd_fault(run)
        elif fault == "mirror dropped":
            mirror_fault(run)
        elif fault == "second doit":
            second_doit(run)
        elif fault == "two checkouts":
            two_checkouts(run)
        elif fault == "corrupted blob":
            corrupt_fault(run)
        else:
            raise ValueError(f"unknown fault {fault}")
    except Exception as exc:  # the harness itself failed: a failed run, with the reason
        outcome.failed.append(f"harness: {type(exc).__name__}: {exc}")
    finally:
        outcome.seconds = time.monotonic() - started
        runs = [r for ck in run.checkouts for r in ck.history]
        outcome.notes.append(
            "doit runs: " + ", ".join(f"{' '.join(r.args)} {r.seconds:.0f} s" for r in runs)
        )
        _cleanup(run)
    return outcome


def _cleanup(run: Cellrun) -> None:
    """Unmount what the cell mounted and remove its folder (its artifacts)."""
    for point in probes.mounts_under([run.root]):
        subprocess.run(["umount", "-l", point], check=False)
    if run.outcome.passed:
        shutil.rmtree(run.root, ignore_errors=True)
    else:  # keep the logs of a failed run and what doit said, not its images
        for number, result in enumerate(r for ck in run.checkouts for r in ck.history):
            (run.root / f"doit-{number}.log").write_text(
                f"$ doit {' '.join(result.args)}  # exit {result.code}\n{result.output}"
            )
        for ck in run.checkouts:
            for path in ck.artifacts.glob("*") if ck.artifacts.is_dir() else ():
                if path.is_file():
                    path.unlink()
        with contextlib.suppress(OSError):
            shutil.rmtree(run.root / "cache")


@contextlib.contextmanager
def session(
    tmp: Path,
    cache: Path,
    projects: Path,
    say: Callable[[str], None] = print,
    stages: set[str] | None = None,
) -> Iterator[Context]:
    """The reference build and the decoys for a session of cells; cleaned up after.

    `projects` is where the harness's projects are copied: keep it at the same path as
    `cache` between sessions (the project's folder is part of configure's inputs).
    `stages`: the stages the cells will fault (default all): the extra tasks (boot test,
    dev container) are built for the reference only when one of them is there.
    """
    lxd = probes.Lxd(probes.MAIN_SOCKET)
    decoys = Decoys(lxd, P)
    decoys.make(tmp / "decoys")
    copy_projects(projects)
    ref = Checkout(tmp / "reference", cache, projects)
    try:
        say("faults: the reference build (what every recovery must equal)")
        for name in recovery_tasks(set(STAGES) if stages is None else stages):
            ref.need(name, timeout=3600)
        detach(ref.artifacts)
        ctx = Context(tmp, cache, projects, lxd, decoys, Reference.of(ref), ref, say)
        yield ctx
    finally:
        # Leave nothing of the project in the machine's LXD (the cache keeps its entries:
        # the next session imports and launches again, and configures from its cache).
        probes.remove_project(lxd, P)
        aptproxyd.stop(aptproxyd.state_dir(cache))  # the dev container's, gone with it
        decoys.remove()
        shutil.rmtree(ref.root, ignore_errors=True)  # a failed run's folder keeps its logs
        shutil.rmtree(tmp / "decoys", ignore_errors=True)


def detach(folder: Path) -> None:
    """Make the installed files of a folder copies of their own, not hard links to the
    cache's blobs: the reference must keep its bytes when a cell changes a blob."""
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_nlink > 1:
            copy = path.with_name(f".{path.name}.copy")
            shutil.copy2(path, copy)
            os.replace(copy, path)
