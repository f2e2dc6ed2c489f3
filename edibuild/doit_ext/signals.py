"""SIGTERM behaves like Ctrl-C, and an interrupt is one line, not a traceback."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any


def _terminate(signum: int, frame: FrameType | None) -> None:
    # doit saves the tasks that finished on KeyboardInterrupt (not on SIGTERM), and the
    # stages clean up in their `finally` blocks.
    raise KeyboardInterrupt(f"terminated by signal {signum}")


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


def install() -> None:
    """Turn SIGTERM into KeyboardInterrupt (unless someone set a handler) and quiet it."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    sys.excepthook = _quiet_interrupt(sys.excepthook)
