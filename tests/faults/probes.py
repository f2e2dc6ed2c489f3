"""What the fault harness looks at: LXD objects, decoys, a private LXD, and the host's leftovers.

Everything is scoped to the harness's own project, paths and processes: the machine is
shared, other people's builds run at the same time, and nothing here touches what is not
the harness's (decoys prove edibuild does not either).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edibuild import orphans
from edibuild.dev import apt
from edibuild.lxd import aptproxyd, names, unixhttp
from edibuild.lxd.errors import BackendError

REPO = Path(__file__).resolve().parents[2]
MAIN_SOCKET = Path("/var/lib/lxd/unix.socket")


# -- LXD ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lxd:
    """One LXD daemon, by its socket (the machine's, or a private one of a cell)."""

    socket: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment pointing `lxc` and edibuild at this daemon."""
        return {**os.environ, "LXD_DIR": str(self.socket.parent)}

    def get(self, path: str) -> Any:
        """GET an API path (metadata)."""
        return unixhttp.get(self.socket, path, timeout=30)

    def lxc(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        """Run `lxc ARGS` against this daemon."""
        proc = subprocess.run(["lxc", *args], env=self.env, input=input, capture_output=True,
                              timeout=300)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"lxc {' '.join(args)}: {proc.stderr.decode()}")
        return proc.stdout.decode()

    def answers(self) -> bool:
        """True when the daemon answers."""
        try:
            unixhttp.request(self.socket, "/1.0", timeout=5)
        except BackendError:
            return False
        return True


@dataclass(frozen=True)
class LxdState:
    """The LXD objects of one project (and those no project label explains)."""

    instances: dict[str, dict[str, Any]]
    profiles: dict[str, dict[str, str]]
    images: dict[str, dict[str, Any]]

    def aliases(self) -> set[str]:
        """Every alias of the project's images."""
        return {a for image in self.images.values() for a in image["aliases"]}


def _mentions(project: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(project)}(?![\w-])", text) is not None


def lxd_state(lxd: Lxd, project: str) -> LxdState:
    """The project's instances, profiles and images (by label, name, alias or description)."""
    prefix = f"{names.PREFIX}{names.safe_name(project)}"
    instances = {}
    for inst in lxd.get("/1.0/instances?recursion=1"):
        config = inst.get("config") or {}
        if config.get(names.PROJECT_LABEL) == project or inst["name"].startswith(prefix):
            devs = inst.get("devices") or {}
            instances[inst["name"]] = {
                "status": inst.get("status"),
                "owner": config.get(names.OWNER_LABEL, ""),
                "devices": sorted(devs.keys()),
                "apt_proxy": config.get(apt.PROXY_LABEL, ""),
                "apt_connect": (devs.get(apt.APT_DEVICE) or {}).get("connect", ""),
            }
    profiles = {}
    for prof in lxd.get("/1.0/profiles?recursion=1"):
        config = prof.get("config") or {}
        if config.get(names.PROJECT_LABEL) == project or prof["name"].startswith(prefix):
            profiles[prof["name"]] = dict(config)
    images = {}
    for image in lxd.get("/1.0/images?recursion=1"):
        props = image.get("properties") or {}
        aliases = sorted(a["name"] for a in image.get("aliases") or ())
        ours = (
            props.get(names.PROJECT_LABEL) == project
            or _mentions(project, str(props.get("description", "")))
            or any(_mentions(project, a) for a in aliases)
        )
        if ours:
            images[image["fingerprint"]] = {
                "aliases": aliases,
                "owner": props.get(names.OWNER_LABEL, ""),
                "description": props.get("description", ""),
            }
    return LxdState(instances, profiles, images)


def apt_proxies(caches: Iterable[Path]) -> dict[int, Path]:
    """The long-lived apt proxies (pid -> state folder) of these caches that run now."""
    found = {}
    for cache in caches:
        state = aptproxyd.state_dir(cache)
        pid = aptproxyd.running(state)
        if pid is not None:
            found[pid] = state
    return found


def proxy_users(states: Iterable[LxdState], container: str) -> set[str]:
    """The apt proxy state folders the dev container names, in any of these daemons."""
    return {s.instances[container]["apt_proxy"] for s in states if container in s.instances}


def unused_proxies(proxies: dict[int, Path], users: set[str]) -> list[str]:
    """The running apt proxies no dev container uses (in any daemon the cell looked at)."""
    return [
        f"apt proxy {pid} ({folder}) runs for no dev container"
        for pid, folder in proxies.items()
        if os.fspath(folder) not in users
    ]


def lxd_leaks(state: LxdState, container: str | None, project: str) -> list[str]:
    """What in `state` a finished build would not have left. Its dev container may stay, and
    with it the proxy device that leads to the apt proxy it names (which must run)."""
    leaks = []
    for name, inst in state.instances.items():
        if name != container:
            leaks.append(f"LXD instance {name} ({inst['status']})")
        elif apt.APT_DEVICE in inst["devices"]:
            folder = Path(inst["apt_proxy"]) if inst["apt_proxy"] else None
            running = folder is not None and aptproxyd.running(folder) is not None
            port = aptproxyd.port(folder) if folder is not None and running else None
            if port is None or inst["apt_connect"] != f"tcp:127.0.0.1:{port}":
                leaks.append(
                    f"LXD proxy device {apt.APT_DEVICE} on {name} leads to no running apt proxy "
                    f"({inst['apt_connect'] or 'no address'}; its proxy: {folder})"
                )
    leaks += [f"LXD profile {name}" for name in state.profiles]
    configure = names.configure_prefix(project)
    for fingerprint, image in state.images.items():
        if not image["aliases"]:
            leaks.append(f"LXD image {fingerprint[:12]} without alias ({image['description']})")
        elif any(a.startswith(configure) for a in image["aliases"]):
            leaks.append(f"LXD image {fingerprint[:12]} named like a container")
    dev = [a for a in state.aliases() if a.startswith(f"{names.DEV_PREFIX}")]
    if len(dev) > 1:
        leaks.append(f"{len(dev)} dev-container images: {', '.join(sorted(dev))}")
    return leaks


FORKPROXY_LOG = re.compile(r"/([^/\s]+)/proxy\.([^/\s]+)\.log")


def forkproxies(state: LxdState, project: str) -> list[str]:
    """LXD's proxy-device processes (`lxd forkproxy`) of the project's instances that do not
    run any more: LXD ends them with their instance, so one left is a leak (seen after a
    forced delete). Each names its instance in its log path; other instances are not ours."""
    prefix = f"{names.PREFIX}{names.safe_name(project)}"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"forkproxy" not in argv[:2] or not orphans.alive(int(entry.name)):
            continue
        match = FORKPROXY_LOG.search(b" ".join(argv).decode(errors="replace"))
        if match is None or not match.group(1).startswith(prefix):
            continue
        name, device = match.groups()
        if state.instances.get(name, {}).get("status") != "Running":
            found.append(f"lxd forkproxy {entry.name} of {name}'s device {device} ({name} gone)")
    return found


def remove_project(lxd: Lxd, project: str) -> None:
    """Delete the project's instances, profiles and images (the harness's own clean-up)."""
    state = lxd_state(lxd, project)
    for name in state.instances:
        lxd.lxc("delete", "--force", name, check=False)
    for name in state.profiles:
        lxd.lxc("profile", "delete", name, check=False)
    for fingerprint, image in state.images.items():
        if image["aliases"] or image["owner"]:  # never an unnamed, unmarked one: a decoy's
            lxd.lxc("image", "delete", fingerprint, check=False)


# -- the host: mounts, loop devices, processes, files ------------------------------------


def mounts_under(roots: Iterable[Path]) -> list[str]:
    """Mount points at or below any of `roots`, deepest first."""
    prefixes = [os.fspath(r) for r in roots]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def loops_under(roots: Iterable[Path]) -> list[str]:
    """Loop devices whose backing file lies below any of `roots`."""
    proc = subprocess.run(["losetup", "--list", "--json"], capture_output=True, text=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    prefixes = [os.fspath(r) for r in roots]
    found = []
    for dev in json.loads(proc.stdout).get("loopdevices", []):
        backing = str(dev.get("back-file") or "")
        if any(backing.startswith(p) for p in prefixes):
            found.append(f"{dev.get('name')} ({backing})")
    return found


def processes(
    marks: Iterable[str], paths: Iterable[Path], allowed: Iterable[int] = ()
) -> list[str]:
    """Processes of the harness's doit runs: marked as theirs, or naming their paths (but
    not the `allowed` ones: the dev containers' long-lived apt proxy)."""
    wanted = set(marks)
    spared = set(allowed)
    prefixes = [os.fspath(p) for p in paths]
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in {os.getpid(), *spared}:
            continue
        pid = int(entry.name)
        if not orphans.alive(pid):
            continue
        owner = orphans.owner_of(pid)
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if (owner is not None and owner in wanted) or any(p in argv for p in prefixes):
            found.append(f"process {pid}: {argv[:160].strip()}")
    return found


def partial_files(roots: Iterable[Path]) -> list[str]:
    """Temporary files a writer left: `.NAME.PID-N.partial`, the apt proxy's `.part-*`."""
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob(".*"):
            if path.is_file() and (
                path.name.endswith(".partial") or path.name.startswith(".part-")
            ):
                found.append(f"temporary file {path}")
    return found


def scratch_left(cache: Path, project: str) -> list[str]:
    """Scratch directories of the project in a cache's `tmp/`."""
    tmp = cache / "tmp"
    if not tmp.is_dir():
        return []
    return [f"scratch {p}" for p in tmp.iterdir() if f"+{project}+" in p.name]


def held_locks(cache: Path) -> list[str]:
    """Lock files of the cache that somebody still holds."""
    held = []
    for path in (cache / "locks").rglob("*.lock"):
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(f"lock {path} is held")
            else:
                fcntl.flock(handle, fcntl.LOCK_UN)
    return held


def mmdebstrap_dirs() -> set[str]:
    """mmdebstrap's temporary trees in /tmp (where it puts them without TMPDIR)."""
    return {os.fspath(p) for p in Path("/tmp").glob("mmdebstrap.*")}


def mmdebstrap_running() -> bool:
    """True when any mmdebstrap runs on the machine (theirs or ours)."""
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):
            if (
                entry.name.isdigit()
                and b"mmdebstrap" in Path(f"/proc/{entry.name}/cmdline").read_bytes()[:200]
            ):
                return True
    return False


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` for the block (a small disk to fill)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={max(size, 4096)}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "edibuild-faults", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def free_used(path: Path) -> int:
    """Bytes in use on the file system at `path`."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def resize(path: Path, size: int) -> None:
    """Give a tmpfs of ours a new size (freeing space, as a user deleting files would)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", path], check=True)
