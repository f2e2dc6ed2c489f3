"""Make sure a local LXD (or Incus) daemon runs and has a storage pool, starting it if needed.

Only the standard library is used (a tiny HTTP client over the unix socket), so this
also works from the system Python before edibuild's virtualenv exists.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edibuild.errors import EdibuildError
from edibuild.run import command_line, run, say

WAIT_SECONDS = 60
INSTALL_HINT = (
    "install LXD: apt-get install lxd lxd-client (or: snap install lxd; or Incus: apt-get "
    "install incus on Debian 13); start it: systemctl start lxd (without systemd: setsid -f "
    "lxd --group root, then lxd waitready); initialise it once: lxd init (a storage pool named "
    "default and a root disk in the default profile); ./edibuild.sh does all of this when run "
    "as root"
)


@dataclass(frozen=True)
class Daemon:
    """One place an LXD-compatible daemon may listen: its socket and how to drive it."""

    socket: Path
    kind: str  # "lxd" or "incus": selects the command-line tool
    origin: str  # where this candidate comes from, for messages

    @property
    def env(self) -> dict[str, str]:
        """Return the environment that points this daemon's command-line tools at it."""
        var = "INCUS_DIR" if self.kind == "incus" else "LXD_DIR"
        return {var: str(self.socket.parent)}

    def command(self, *args: str) -> list[str]:
        """Return argv for this daemon's admin tool (`lxd ...` or `incus admin ...`)."""
        return ["incus", "admin", *args] if self.kind == "incus" else ["lxd", *args]


class _UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a unix socket (the LXD REST API's local transport)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("lxd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Connect to the unix socket instead of a TCP host."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def api_get(sock: Path, path: str, timeout: float = 10.0) -> Any:
    """GET `path` from the REST API at `sock` and return its metadata (OSError if unreachable)."""
    conn = _UnixHTTPConnection(sock, timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
    except (http.client.HTTPException, ValueError) as exc:
        raise OSError(f"{sock} did not answer like LXD: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise OSError(f"{sock}: GET {path} returned HTTP {response.status}: {body.get('error')}")
    return body.get("metadata")


def candidates(env: Mapping[str, str] = os.environ, root: Path = Path("/")) -> list[Daemon]:
    """List where daemons keep their socket, in the order edibuild tries them."""
    found = []
    if env.get("LXD_DIR"):
        found.append(Daemon(Path(env["LXD_DIR"]) / "unix.socket", "lxd", "$LXD_DIR"))
    if env.get("INCUS_DIR"):
        found.append(Daemon(Path(env["INCUS_DIR"]) / "unix.socket", "incus", "$INCUS_DIR"))
    found += [
        Daemon(root / "var/lib/lxd/unix.socket", "lxd", "the Debian package"),
        Daemon(root / "var/snap/lxd/common/lxd/unix.socket", "lxd", "the snap"),
        Daemon(root / "var/lib/incus/unix.socket", "incus", "Incus"),
    ]
    return found


def find_running(daemons: Sequence[Daemon]) -> Daemon | None:
    """Return the first daemon that answers on its socket.

    Raise EdibuildError when a socket exists but refuses us (permissions), since
    starting another daemon would not help then.
    """
    for daemon in daemons:
        try:
            api_get(daemon.socket, "/1.0", timeout=5.0)
        except PermissionError as exc:
            raise EdibuildError(
                f"cannot talk to LXD at {daemon.socket}: {exc.strerror}",
                hint="run as root, or add yourself to the lxd group "
                "(usermod -aG lxd $USER, then log in again)",
            ) from exc
        except OSError:
            continue
        return daemon
    return None


def _systemd_runs() -> bool:
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def _wait_for(daemon: Daemon, log: Path) -> Daemon:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if find_running([daemon]) is not None:
            return daemon
        time.sleep(0.5)
    raise EdibuildError(
        f"the {daemon.kind} daemon did not answer on {daemon.socket} within {WAIT_SECONDS} s",
        hint=f"look at its log: {log}",
    )


def _start_with_systemd(daemons: Sequence[Daemon], log: Path) -> Daemon:
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


def _daemon_log(daemon: Daemon, repo: Path) -> Path:
    system_dir = Path("/var/log/lxd")
    if daemon.origin == "the Debian package" and system_dir.is_dir():
        return system_dir / "lxd.log"
    return repo / ".edibuild" / "lxd.log"


def _start_by_hand(daemon: Daemon, repo: Path) -> Daemon:
    log = _daemon_log(daemon, repo)
    say(f"starting the LXD daemon: lxd --group root (no init system manages it; log: {log})")
    # setsid --fork detaches the daemon into its own session; it inherits only the log.
    run(["setsid", "--fork", "lxd", "--group", "root"], log=log, env=daemon.env, cwd="/")
    run([*daemon.command("waitready", "--timeout", str(WAIT_SECONDS))], log=log, env=daemon.env)
    return _wait_for(daemon, log)


def start_daemon(daemons: Sequence[Daemon], repo: Path) -> Daemon:
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


def ensure_initialised(daemon: Daemon, log: Path) -> bool:
    """Give a daemon without any storage pool the minimal setup edibuild needs; tell if it did.

    No network is created: `lxd init --auto` would try a private subnet (forbidden here).
    """
    if api_get(daemon.socket, "/1.0/storage-pools"):
        return False
    profile = api_get(daemon.socket, "/1.0/profiles/default")
    preseed = preseed_for(profile.get("devices") or {})
    argv = daemon.command("init", "--preseed")
    say(f"initialising {daemon.kind}: {command_line(argv)} (a dir storage pool named default)")
    run(argv, input=json.dumps(preseed).encode(), log=log, env=daemon.env)
    return True


def ensure_lxd(repo: Path | None = None, daemons: Sequence[Daemon] | None = None) -> str:
    """Find (or start) a local LXD/Incus daemon, initialise it if bare; return its socket path.

    `daemons` replaces the usual candidates (tests use it to run a daemon of their own).
    """
    repo = repo or Path(__file__).resolve().parents[2]
    daemons = daemons or candidates()
    daemon = find_running(daemons) or start_daemon(daemons, repo)
    ensure_initialised(daemon, repo / ".edibuild" / "setup.log")
    return str(daemon.socket)
