"""Make sure a local LXD (or Incus) daemon runs and has a storage pool, starting it if needed.

Where the daemon keeps containers in plain folders (a `dir` pool), a btrfs pool named
`edibuild` is added for the build containers (edibuild/lxd/names.py BUILD_POOL): LXD
unpacks a cached layer there once and then starts a container from it in about a
second, where a dir pool unpacks the whole image (15 s for 1.5 GB) on every start.

Only the standard library is used (the daemon is found and asked through
edibuild/lxd/endpoints.py and unixhttp.py), so this also works from the system Python
before edibuild's virtualenv exists.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edibuild.errors import EdibuildError
from edibuild.lxd import unixhttp
from edibuild.lxd.endpoints import INSTALL_HINT, Endpoint, find_running, local_candidates
from edibuild.run import command_line, run, say

WAIT_SECONDS = 60
BUILD_POOL = "edibuild"  # the same name as edibuild.lxd.names.BUILD_POOL
# A sparse file below the daemon's folder, mounted with discard: it holds what is in use.
BUILD_POOL_SIZE = "30GiB"
NO_BUILD_POOL = "EDIBUILD_BUILD_POOL"  # set to `none`: no pool is added


def _systemd_runs() -> bool:
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def _wait_for(daemon: Endpoint, log: Path) -> Endpoint:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if find_running([daemon]) is not None:
            return daemon
        time.sleep(0.5)
    raise EdibuildError(
        f"the {daemon.kind} daemon did not answer on {daemon.socket} within {WAIT_SECONDS} s",
        hint=f"look at its log: {log}",
    )


def _start_with_systemd(daemons: Sequence[Endpoint], log: Path) -> Endpoint:
    if Path("/snap/bin/lxd").exists():
        unit, origin = "snap.lxd.daemon", "the snap"
    elif shutil.which("lxd"):
        unit, origin = "lxd", "the Debian package"
    else:
        unit, origin = "incus", "Incus"
    daemon = next(d for d in daemons if d.origin == origin)
    say(f"starting the {daemon.kind} daemon: systemctl start {unit}")
    run(["systemctl", "start", unit], log=log)
    return _wait_for(daemon, log)


def _daemon_log(daemon: Endpoint, repo: Path) -> Path:
    system_dir = Path("/var/log/lxd")
    if daemon.origin == "the Debian package" and system_dir.is_dir():
        return system_dir / "lxd.log"
    return repo / ".edibuild" / "lxd.log"


def _start_by_hand(daemon: Endpoint, repo: Path) -> Endpoint:
    log = _daemon_log(daemon, repo)
    say(f"starting the LXD daemon: lxd --group root (no init system manages it; log: {log})")
    # setsid --fork detaches the daemon into its own session; it inherits only the log,
    # and is not marked as a build's process (a build's leftovers are ended: never LXD).
    argv = ["setsid", "--fork", "lxd", "--group", "root"]
    run(argv, log=log, env=daemon.env, cwd="/", owned=False)
    run([*daemon.command("waitready", "--timeout", str(WAIT_SECONDS))], log=log, env=daemon.env)
    return _wait_for(daemon, log)


def start_daemon(daemons: Sequence[Endpoint], repo: Path) -> Endpoint:
    """Start the daemon: through systemd when it is PID 1, else `lxd --group root` by hand."""
    installed = [c for c in ("lxd", "incus") if shutil.which(c)]
    if not installed and not Path("/snap/bin/lxd").exists():
        tried = ", ".join(str(d.socket) for d in daemons)
        message = f"no LXD or Incus found (no daemon answers at {tried})"
        raise EdibuildError(message, hint=INSTALL_HINT)
    if os.geteuid() != 0:
        message = "the LXD daemon is not running and starting it needs root"
        raise EdibuildError(message, hint=INSTALL_HINT)
    if _systemd_runs():
        return _start_with_systemd(daemons, repo / ".edibuild" / "setup.log")
    if shutil.which("lxd") is None:
        raise EdibuildError(
            "Incus is installed but not running, and without systemd edibuild cannot start it",
            hint="start incusd by hand (incusd --group root) or use LXD",
        )
    daemon = next(d for d in daemons if d.kind == "lxd")
    return _start_by_hand(daemon, repo)


def preseed_for(profile_devices: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Return `init --preseed` data: a dir pool `default`, plus a root disk when none exists."""
    preseed: dict[str, Any] = {"storage_pools": [{"name": "default", "driver": "dir"}]}
    has_root = any(
        dev.get("type") == "disk" and dev.get("path") == "/" for dev in profile_devices.values()
    )
    if not has_root:
        root = {"type": "disk", "path": "/", "pool": "default"}
        preseed["profiles"] = [{"name": "default", "devices": {"root": root}}]
    return preseed


def ensure_initialised(daemon: Endpoint, log: Path) -> bool:
    """Give a daemon without any storage pool the minimal setup edibuild needs; tell if it did.

    No network is created: `lxd init --auto` would try a private subnet (forbidden here).
    """
    if unixhttp.get(daemon.socket, "/1.0/storage-pools"):
        return False
    profile = unixhttp.get(daemon.socket, "/1.0/profiles/default")
    preseed = preseed_for(profile.get("devices") or {})
    argv = daemon.command("init", "--preseed")
    say(f"initialising {daemon.kind}: {command_line(argv)} (a dir storage pool named default)")
    run(argv, input=json.dumps(preseed).encode(), log=log, env=daemon.env)
    return True


def wants_build_pool(
    pools: Sequence[Mapping[str, Any]],
    profile_devices: Mapping[str, Mapping[str, str]],
    filesystems: str,
    env: Mapping[str, str],
) -> bool:
    """True when the daemon should get edibuild's btrfs pool: it has none yet, the default
    profile's root disk is on a `dir` pool, the kernel has btrfs (`filesystems` is
    /proc/filesystems) and the user did not opt out."""
    if env.get(NO_BUILD_POOL, "").lower() == "none":
        return False
    drivers = {str(p.get("name")): str(p.get("driver")) for p in pools}
    if BUILD_POOL in drivers:
        return False
    root = next(
        (d for d in profile_devices.values() if d.get("type") == "disk" and d.get("path") == "/"),
        None,
    )
    if root is None or drivers.get(str(root.get("pool"))) != "dir":
        return False
    return any(line.split()[-1:] == ["btrfs"] for line in filesystems.splitlines())


def ensure_build_pool(daemon: Endpoint, log: Path) -> bool:
    """Add the btrfs pool `edibuild` for build containers when `wants_build_pool`; tell if
    it did. A failure only warns: builds then use the default pool, more slowly."""
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        return False
    pools = unixhttp.get(daemon.socket, "/1.0/storage-pools?recursion=1") or []
    profile = unixhttp.get(daemon.socket, "/1.0/profiles/default")
    wanted = wants_build_pool(pools, profile.get("devices") or {}, filesystems, os.environ)
    if not wanted or shutil.which("mkfs.btrfs") is None:
        return False
    client = "incus" if daemon.kind == "incus" else "lxc"
    argv = [client, "storage", "create", BUILD_POOL, "btrfs", f"size={BUILD_POOL_SIZE}"]
    say(
        f"adding a btrfs storage pool for build containers: {command_line(argv)} (a sparse "
        f"file; they start from a cached layer in 1 s there; {NO_BUILD_POOL}=none skips this)"
    )
    try:
        run(argv, log=log, env=daemon.env)
    except EdibuildError as exc:
        say(f"warning: no btrfs pool, build containers use the default pool: {exc}")
        return False
    return True


def ensure_lxd(repo: Path | None = None, daemons: Sequence[Endpoint] | None = None) -> str:
    """Find (or start) a local LXD/Incus daemon, initialise it if bare; return its socket path.

    `daemons` replaces the usual candidates (tests use it to run a daemon of their own).
    """
    repo = repo or Path(__file__).resolve().parents[2]
    daemons = daemons or local_candidates()
    daemon = find_running(daemons) or start_daemon(daemons, repo)
    ensure_initialised(daemon, repo / ".edibuild" / "setup.log")
    ensure_build_pool(daemon, repo / ".edibuild" / "setup.log")
    return str(daemon.socket)
