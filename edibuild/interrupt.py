"""One interrupt for the whole doit process, whichever thread runs a stage.

A signal (SIGINT, SIGTERM) reaches the main thread only; with `doit -n 2` the stages run
in worker threads, which doit abandons when its main thread stops. So the signal handler
(edibuild/doit_ext/signals.py) records the request here and ends the commands of every
thread (edibuild/run.py); loops that wait in Python (a playbook, a boot) ask `check()`;
and before the process exits, it waits for the stages still cleaning up (`drain`), so
their containers and scratch space go the same way as those of the main thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

DRAIN_SECONDS = 180  # the longest a stage may take to clean up after an interrupt

_requested = threading.Event()
_active = 0
_changed = threading.Condition()


def request() -> None:
    """Ask every stage to stop (the signal handler calls this)."""
    _requested.set()


def requested() -> bool:
    """True once an interrupt was asked for."""
    return _requested.is_set()


def check() -> None:
    """Raise KeyboardInterrupt in this thread when an interrupt was asked for."""
    if _requested.is_set():
        raise KeyboardInterrupt("interrupted")


@contextlib.contextmanager
def building() -> Iterator[None]:
    """Count a stage build as running for the block (`drain` waits for it)."""
    global _active
    with _changed:
        _active += 1
    try:
        yield
    finally:
        with _changed:
            _active -= 1
            _changed.notify_all()


def active() -> int:
    """How many stage builds are running now."""
    with _changed:
        return _active


def drain(timeout: float = DRAIN_SECONDS) -> int:
    """Wait until no stage build runs (at most `timeout` s); return how many still do."""
    deadline = time.monotonic() + timeout
    with _changed:
        while _active and (left := deadline - time.monotonic()) > 0:
            _changed.wait(min(left, 1.0))
        return _active
