"""Ctrl-C and SIGTERM stop every stage the same way, and an interrupt is one line.

Both signals raise KeyboardInterrupt in the main thread (doit saves the tasks that
finished on KeyboardInterrupt, not on SIGTERM) after asking every running command to
end (edibuild/run.py) and every stage to stop (edibuild/interrupt.py): with `doit -n 2`
the stages run in worker threads that no signal reaches. Before the process exits it
waits for those stages to finish cleaning up (their `finally` blocks remove containers
and scratch space), so a parallel build leaves what a serial one leaves.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from types import FrameType
from typing import Any

from edibuild import interrupt, orphans, run


def _interrupt(signum: int, frame: FrameType | None) -> None:
    interrupt.request()
    run.terminate_all()
    raise KeyboardInterrupt(f"interrupted by {signal.Signals(signum).name}")


def _quiet_interrupt(previous: Any) -> Any:
    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print(
                "edibuild: interrupted; finished tasks are saved, partial work removed",
                file=sys.stderr,
            )
            return
        previous(kind, value, tb)

    return hook


def _drain() -> None:
    """At exit after an interrupt: wait for stages of other threads to clean up."""
    if not interrupt.requested() or not interrupt.active():
        return
    print(
        f"edibuild: waiting for {interrupt.active()} stage(s) to clean up "
        f"(at most {interrupt.DRAIN_SECONDS} s)",
        file=sys.stderr,
        flush=True,
    )
    left = interrupt.drain()
    if left:
        print(
            f"edibuild: {left} stage(s) did not finish cleaning up; the next run removes "
            "what they leave",
            file=sys.stderr,
        )


def install() -> None:
    """Handle SIGINT and SIGTERM (unless someone set a handler), quiet the interrupt,
    and mark this process as the owner of what it starts (edibuild/orphans.py)."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    sys.excepthook = _quiet_interrupt(sys.excepthook)
    atexit.register(_drain)
    # Inherited by everything this process starts, also what it starts without run.py
    # (ansible-runner's ansible-playbook): a killed build's processes are found by it.
    os.environ[orphans.OWNER_ENV] = orphans.mark()
