"""The signal faults: SIGKILL, SIGTERM or SIGINT (Ctrl-C) sent to doit while a stage builds,
alone or beside a parallel one (`-n 2`).
"""

from __future__ import annotations

import contextlib
import os
import signal

from tests.faults.checks import check_leaks, check_message, check_stale, finish_checks, recover
from tests.faults.harness import STOP_SECONDS, Cellrun, force, strike, task, warm
from tests.faults.matrix import PARALLEL


def signal_fault(run: Cellrun, signum: signal.Signals, parallel: bool = False) -> None:
    ck = run.checkout()
    stages = (run.stage, PARALLEL[run.stage]) if parallel else (run.stage,)
    warm(ck, *stages)
    for stage in stages:
        force(run, ck, stage)
    args = (("-n", "2") if parallel else ()) + tuple(task(s) for s in stages)
    started = ck.start(*args)

    def send() -> None:
        if signum == signal.SIGINT:  # Ctrl-C: the terminal signals the foreground group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.proc.pid, signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.proc.pid, signum)

    strike(run, started, stages, send)
    result = started.finish(STOP_SECONDS)
    if result.code == -999:
        run.outcome.failed.append(f"doit did not stop within {STOP_SECONDS} s of {signum.name}")
    check_stale(run, f"after {signum.name}")
    if signum != signal.SIGKILL:
        if run.outcome.landed:
            check_message(run, result, "interrupted", run.stage)
        check_leaks(run, f"right after {signum.name}", processes_only=True)
    recover(run, ck, set(stages))
    finish_checks(run)
