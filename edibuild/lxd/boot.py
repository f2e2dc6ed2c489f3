"""Waiting for systemd in a fresh container to finish booting (over any exec function).

A container never gets the block devices of the image's fstab (the data partition, the
boot partition), so systemd would wait 90 s for each before calling the boot finished:
twice in a row nothing but device jobs running counts as booted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from edibuild.errors import StageFailed
from edibuild.lxd.protocol import Executed

BOOTED = ("running", "degraded", "maintenance")
Execute = Callable[[Sequence[str]], Executed]


def wait_for_boot(
    execute: Execute,
    name: str,
    timeout: float = 120,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once systemd in container `name` is up (or waits only for devices)."""
    deadline = clock() + timeout
    stuck = 0
    while clock() < deadline:
        code, out, _ = execute(["systemctl", "is-system-running"])
        state = out.decode().strip()
        if state in BOOTED or code == 127:  # 127: no systemctl, nothing to wait for
            return
        stuck = stuck + 1 if state == "starting" and only_devices_running(execute) else 0
        if stuck >= 2:
            return
        sleep(0.5)
    raise StageFailed(f"container {name} did not finish booting within {timeout:.0f} s")


def only_devices_running(execute: Execute) -> bool:
    """True when every running systemd job waits for a device (which never comes here)."""
    code, out, _ = execute(["systemctl", "list-jobs", "--no-legend", "--plain"])
    running = [
        fields[1]
        for fields in (line.split() for line in out.decode().splitlines())
        if len(fields) >= 4 and fields[3] == "running"
    ]
    return code == 0 and bool(running) and all(unit.endswith(".device") for unit in running)
