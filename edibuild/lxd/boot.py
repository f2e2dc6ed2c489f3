"""Waiting for systemd in a fresh container to finish booting (over any exec function).

A container never gets the block devices of the image's fstab (the data partition, the
boot partition), so systemd would wait 90 s for each before calling the boot finished:
twice in a row nothing but device jobs running, their jobs are cancelled and the boot
goes on at once. That holds in early boot too (`initializing`): a unit ordered after
such a mount (Mender's tmpfiles run waits for /data) holds sysinit.target, and every
start of a configure container from a layer after it waited the full 90 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from edibuild.errors import StageFailed
from edibuild.lxd.protocol import Executed

BOOTED = ("running", "degraded", "maintenance")
POLL = 0.2  # seconds between two looks; a container boots in about a second
BOOTING = ("initializing", "starting")
Execute = Callable[[Sequence[str]], Executed]


def wait_for_boot(
    execute: Execute,
    name: str,
    timeout: float = 120,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once systemd in container `name` is up. A boot that waits only for devices
    gets those jobs cancelled, so it finishes now, before any playbook runs, as it would
    90 s later (or, when systemd refuses to cancel them, counts as booted as it is)."""
    deadline = clock() + timeout
    stuck = 0
    while clock() < deadline:
        code, out, _ = execute(["systemctl", "is-system-running"])
        state = out.decode().strip()
        if state in BOOTED or code == 127:  # 127: no systemctl, nothing to wait for
            return
        jobs = device_jobs(execute) if state in BOOTING else []
        stuck = stuck + 1 if jobs else 0
        if stuck >= 2:
            if execute(["systemctl", "cancel", *jobs])[0] != 0:
                return
            stuck = 0
            continue  # the boot goes on at once: look again now
        sleep(POLL)
    raise StageFailed(f"container {name} did not finish booting within {timeout:.0f} s")


def device_jobs(execute: Execute) -> list[str]:
    """The ids of the running systemd jobs when every one waits for a device (which never
    comes here); none when another job runs."""
    code, out, _ = execute(["systemctl", "list-jobs", "--no-legend", "--plain"])
    running = [
        (fields[0], fields[1])
        for fields in (line.split() for line in out.decode().splitlines())
        if len(fields) >= 4 and fields[3] == "running"
    ]
    if code != 0 or not running or not all(unit.endswith(".device") for _, unit in running):
        return []
    return [job for job, _ in running]
