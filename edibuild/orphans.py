"""Processes a killed build left running: marked by owner, found and ended by the next run.

Every command edibuild starts, and everything those start in turn, inherits
`EDIBUILD_OWNER=<host>:<pid>` naming the doit process it belongs to. A build that is
killed outright (SIGKILL, the OOM killer) cannot end its commands; the kernel sends its
direct children SIGTERM (edibuild/run.py asks for that), but their own children (apt
under mmdebstrap, qemu under `timeout`) may keep running and keep writing into scratch
space. Before a run removes a dead build's scratch space it ends the processes whose
owner is gone: SIGTERM, then SIGKILL for those still there after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

OWNER_ENV = "EDIBUILD_OWNER"
GRACE_SECONDS = 10.0
_MARK = re.compile(rb"(?:^|\0)" + OWNER_ENV.encode() + rb"=([^\0]*)")


def mark(pid: int | None = None) -> str:
    """The owner mark of this process (or of `pid`): `<host>:<pid>`."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def alive(pid: int) -> bool:
    """True while a process with this pid exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in ("Z", "X", "")


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def owner_gone(value: str) -> bool:
    """True when a mark names a process of this host that has ended (never this one)."""
    host, _, pid = value.partition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return not alive(int(pid))


@dataclass(frozen=True)
class Orphan:
    """A process whose owning build is gone."""

    pid: int
    owner: str
    command: str

    def __str__(self) -> str:
        return f"{self.command} (pid {self.pid}, of the ended build {self.owner})"


def owner_of(pid: int) -> str | None:
    """The owner mark in a process's environment, if it has one."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    found = _MARK.search(environ)
    return found.group(1).decode(errors="replace") if found else None


def _command(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    return " ".join(a.decode(errors="replace") for a in argv[:4] if a)[:120] or "?"


def find(owners: Iterable[str] | None = None) -> list[Orphan]:
    """Processes marked by an ended build (or by one of `owners`, ended or not)."""
    wanted = set(owners) if owners is not None else None
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        owner = owner_of(int(entry.name))
        if owner is None:
            continue
        if (owner in wanted) if wanted is not None else owner_gone(owner):
            found.append(Orphan(int(entry.name), owner, _command(int(entry.name))))
    return found


def end(orphans: list[Orphan], grace: float = GRACE_SECONDS) -> list[Orphan]:
    """SIGTERM the orphans, SIGKILL those left after `grace` seconds; return those ended."""
    for orphan in orphans:
        _signal(orphan.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(o.pid) for o in orphans):
        time.sleep(0.2)
    for orphan in orphans:
        if alive(orphan.pid):
            _signal(orphan.pid, signal.SIGKILL)
    return orphans


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def end_orphans() -> list[Orphan]:
    """End every process left by an ended build on this host; return them."""
    return end(find())
