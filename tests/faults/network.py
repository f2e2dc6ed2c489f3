"""The daemon and network faults: the LXD daemon stopped mid-build (a private LXD), and the
mirror dropped (the build's TCP connections to it and to the apt proxy cut for a while).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.faults.checks import check_message, check_stale, finish_checks, recover
from tests.faults.decoys import Decoys, PrivateLxd
from tests.faults.harness import STOP_SECONDS, Cellrun, P, force, strike, task, warm


def lxd_fault(run: Cellrun) -> None:
    private = PrivateLxd()
    try:
        private.start()
        run.lxd = private.lxd
        decoys = Decoys(private.lxd, P)
        decoys.make(run.root / "decoys")
        run.decoys.append(decoys)
        ck = run.checkout()
        warm(ck, run.stage)
        ck.need("clean", "--forget", task(run.stage))
        started = ck.start(task(run.stage))
        how = run.rng.choice([signal.SIGTERM, signal.SIGKILL])
        run.note(f"the LXD daemon gets {how.name}")
        strike(run, started, (run.stage,), lambda: private.stop(how))
        result = started.finish(STOP_SECONDS)
        if result.code == -999:
            run.outcome.failed.append(f"doit did not stop within {STOP_SECONDS} s without LXD")
        elif run.outcome.landed and result.code != 0:
            check_message(run, result, "LXD")
        check_stale(run, "after LXD stopped")
        private.start()  # started again, as edibuild starts it
        recover(run, ck)
        finish_checks(run)
    finally:
        for d in run.decoys:
            with contextlib.suppress(Exception):
                d.remove()
        run.decoys.clear()
        private.close()


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                ppid = int(stat.rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


_PEER = re.compile(r"^(\S+)\s+\S+\s+\S+\s+(\S+):(\d+)\s+(\S+):(\d+)\s+(.*)$")


def cut_connections(pids: set[int], proxy_ports: set[int]) -> int:
    """Reset the TCP connections of `pids` to a mirror (ports 80, 443) or to our apt proxy."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=False).stdout
    cut = 0
    for line in out.splitlines():
        found = _PEER.match(line)
        if not found or not any(f"pid={p}," in found.group(6) for p in pids):
            continue
        laddr, lport, paddr, pport = found.group(2, 3, 4, 5)
        mirror = int(pport) in (80, 443) and not paddr.startswith(("127.", "[::1]"))
        proxy = int(pport) in proxy_ports or int(lport) in proxy_ports
        if mirror or proxy:
            subprocess.run(["ss", "-K", "-tn", "src", laddr.strip("[]"), "sport", "=", f":{lport}",
                            "dst", paddr.strip("[]"), "dport", "=", f":{pport}"],
                           capture_output=True, check=False)  # fmt: skip
            cut += 1
    return cut


def listening(pid: int) -> set[int]:
    """The loopback ports a process listens on (edibuild's apt proxy)."""
    out = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True, check=False).stdout
    return {int(m.group(1)) for line in out.splitlines() if f"pid={pid}," in line
            for m in [re.search(r"127\.0\.0\.1:(\d+)", line)] if m}  # fmt: skip


def mirror_fault(run: Cellrun) -> None:
    cache = run.ctx.cache
    ck = run.checkout()
    warm(ck, run.stage)
    if run.stage == "configure":
        cache = run.root / "cache"  # an apt proxy cache of its own: downloads really happen
        ck.need("clean", "--forget", task(run.stage))  # and no layers: every playbook runs
        ck.cache = cache
        ck.env["EDIBUILD_CACHE"] = str(cache)
    else:
        force(run, ck, run.stage)
    started = ck.start(task(run.stage))
    drop = run.rng.uniform(3, 45)
    cuts = [0]

    def cut() -> None:
        run.note(f"connections cut for {drop:.0f} s")
        end = time.monotonic() + drop
        while time.monotonic() < end and started.proc.poll() is None:
            pids = _descendants(started.proc.pid)
            cuts[0] += cut_connections(pids, listening(started.proc.pid))
            time.sleep(0.2)

    # Early, while packages download: bootstrap's first seconds, configure's kernel.
    after = "[qemu_kernel] Install the kernel" if run.stage == "configure" else ""
    strike(run, started, (run.stage,), cut, within=15, after=after)
    run.note(f"{cuts[0]} connections cut")
    result = started.finish(3600)
    if result.code == -999:
        run.outcome.failed.append("doit did not stop after the mirror came back")
    elif result.code != 0:
        check_message(run, result, "")
    else:
        run.note("the stage got through (apt retried)")
    check_stale(run, "after the connections were cut")
    recover(run, ck)
    finish_checks(run)
