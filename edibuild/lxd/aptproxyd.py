"""The long-lived apt proxy: apt inside *running* dev containers when LXD has no bridge.

configure runs edibuild.lxd.aptproxy as a thread for the length of its build; a dev
container lives on after `doit container:NAME` ends, so its apt needs a proxy that
does too. One process per workspace cache serves every dev container of that cache:

- state in `<cache>/apt-proxy-daemon/`: `port` (fixed once chosen, so the containers'
  proxy devices keep pointing at it), `hosts` (the mirror hosts it forwards to, the
  union of every dev container's; re-read when it changes), `pid` and `log`;
- downloads cached in `<cache>/apt-proxy/`, the same cache configure's proxy fills;
- `ensure()` starts it when it is not running (detached: its own session, stdin
  /dev/null, output to the log) and returns its port; `stop()` ends it (SIGTERM, then
  SIGKILL after 10 s). The container stage starts it; `doit clean container:NAME`
  stops it when no dev container uses it any more. After a reboot it is not running:
  `doit container:NAME` starts it again (its up-to-date check looks for it).

`python -m edibuild.lxd.aptproxyd status|stop CACHE_DIR` answers or stops it by hand.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edibuild.dev import ports
from edibuild.errors import StageFailed
from edibuild.lxd import aptproxy

STATE_NAME = "apt-proxy-daemon"
MODULE = "edibuild.lxd.aptproxyd"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def state_dir(cache_dir: Path) -> Path:
    """The daemon's state folder in a workspace cache."""
    return cache_dir / STATE_NAME


@dataclass(frozen=True)
class Daemon:
    """A running proxy: its port and pid, and whether this call started it."""

    port: int
    pid: int
    started: bool


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def running(state: Path) -> int | None:
    """The pid of this state folder's proxy if it runs (a stale pid file counts as none)."""
    pid = _read_int(state / "pid")
    if pid is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    ours = MODULE.encode() in cmdline and os.fsencode(state) in cmdline
    return pid if ours else None


def port(state: Path) -> int | None:
    """The port the proxy of this state folder listens (or listened) on."""
    return _read_int(state / "port")


def hosts(state: Path) -> list[str]:
    """The mirror hosts the proxy forwards to."""
    try:
        text = (state / "hosts").read_text()
    except OSError:
        return []
    return sorted({line.strip() for line in text.splitlines() if line.strip()})


def add_hosts(state: Path, wanted: Iterable[str]) -> list[str]:
    """Add mirror hosts to the state (a running proxy picks them up); return them all."""
    now = hosts(state)
    merged = sorted({*now, *wanted})
    if merged != now:
        _write(state / "hosts", "".join(f"{h}\n" for h in merged))
    return merged


def _accepts(listen: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", listen)) == 0


def _log_tail(state: Path) -> str:
    try:
        return "\n".join((state / "log").read_text(errors="replace").splitlines()[-15:])
    except OSError:
        return ""


def ensure(
    state: Path,
    cache: Path,
    wanted: Sequence[str],
    choose_port: Callable[[str], int],
    start: Callable[[list[str], Path], None],
) -> Daemon:
    """Return the running proxy, starting it first when it is not running.

    `choose_port(state)` picks a port the first time (or when the stored one is taken
    by another program); `start(argv, log)` runs the command that detaches the proxy.
    """
    if not wanted:
        raise StageFailed(
            "no http:// mirror to proxy for the container",
            hint="give bootstrap.mirror as an http:// URL (apt verifies signatures)",
        )
    state.mkdir(parents=True, exist_ok=True)
    add_hosts(state, wanted)
    pid, listen = running(state), port(state)
    if pid is not None and listen is not None:
        return Daemon(listen, pid, started=False)
    if listen is None or not ports.bindable(listen):
        listen = choose_port(str(state))
        _write(state / "port", f"{listen}\n")
    (state / "pid").unlink(missing_ok=True)
    argv = [sys.executable, "-m", MODULE, "serve", os.fspath(state), os.fspath(cache)]
    start(argv, state / "log")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = running(state)
        if pid is not None and _accepts(listen):
            return Daemon(listen, pid, started=True)
        time.sleep(0.1)
    raise StageFailed(
        f"the apt proxy did not start on 127.0.0.1:{listen} within {START_TIMEOUT:.0f} s",
        hint=f"its log is {state / 'log'}:\n{_log_tail(state)}",
    )


def stop(state: Path) -> bool:
    """Stop the proxy of this state folder; True if one was running."""
    pid = running(state)
    if pid is None:
        (state / "pid").unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while running(state) == pid and time.monotonic() < deadline:
        time.sleep(0.1)
    if running(state) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    (state / "pid").unlink(missing_ok=True)
    return True


class _DaemonServer(aptproxy._ProxyServer):
    """The proxy with its hosts in a file it re-reads when the file changes."""

    def __init__(self, state: Path, cache: Path, listen: int) -> None:
        self.state = state
        self._hosts_mtime = -1.0
        super().__init__(hosts(state), cache, aptproxy.public_address, listen=listen)

    def address_of(self, host: str, port: int) -> str | None:
        """Re-read the hosts file if it changed, then answer as the proxy does."""
        with contextlib.suppress(OSError):
            mtime = (self.state / "hosts").stat().st_mtime
            if mtime != self._hosts_mtime:
                self._hosts_mtime = mtime
                self.hosts = {h.lower() for h in hosts(self.state)}
        return super().address_of(host, port)


def serve(state: Path, cache: Path) -> int:
    """Detach (fork, new session), then serve until SIGTERM; the pid file lives meanwhile."""
    listen = port(state)
    if listen is None:
        print(f"aptproxyd: no port in {state}", flush=True)
        return 2
    if os.fork() != 0:
        os._exit(0)  # the starter waits for this; the child lives on alone
    os.setsid()
    os.chdir("/")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        server = _DaemonServer(state, cache, listen)
    except OSError as exc:
        print(f"aptproxyd: cannot listen on 127.0.0.1:{listen}: {exc}", flush=True)
        return 1

    def shutdown(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _write(state / "pid", f"{os.getpid()}\n")
    print(f"aptproxyd: pid {os.getpid()} serving 127.0.0.1:{listen} for {hosts(state)}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if _read_int(state / "pid") == os.getpid():
            (state / "pid").unlink(missing_ok=True)
        stats = server.stats
        print(f"aptproxyd: stopped (hits {stats.hits}, misses {stats.misses}, "
              f"refused {stats.refused})", flush=True)  # fmt: skip
    return 0


def main(argv: Sequence[str]) -> int:
    """`serve STATE CACHE` (what ensure() starts), `status CACHE_DIR`, `stop CACHE_DIR`."""
    if len(argv) == 3 and argv[0] == "serve":
        return serve(Path(argv[1]), Path(argv[2]))
    if len(argv) == 2 and argv[0] in ("status", "stop"):
        state = state_dir(Path(argv[1]))
        if argv[0] == "stop":
            print("stopped" if stop(state) else "not running")
            return 0
        pid = running(state)
        print(f"running: pid {pid}, 127.0.0.1:{port(state)}" if pid else "not running")
        return 0 if pid else 3
    print("usage: python -m edibuild.lxd.aptproxyd status|stop CACHE_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
