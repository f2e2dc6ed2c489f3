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
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edibuild import orphans
from edibuild.host import lxd_service
from edibuild.lxd import names, unixhttp
from edibuild.lxd.endpoints import Endpoint
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
            instances[inst["name"]] = {
                "status": inst.get("status"),
                "owner": config.get(names.OWNER_LABEL, ""),
                "devices": sorted((inst.get("devices") or {}).keys()),
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


def lxd_leaks(state: LxdState, container: str | None, project: str) -> list[str]:
    """What in `state` a finished build would not have left (its dev container may stay)."""
    leaks = []
    for name, inst in state.instances.items():
        if name != container:
            leaks.append(f"LXD instance {name} ({inst['status']})")
        elif "edibuild-apt" in inst["devices"]:
            leaks.append(f"LXD proxy device edibuild-apt on {name}")
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


# -- decoys: the user's own LXD objects, which edibuild must never touch -------------------


def _tiny_image(folder: Path, description: str) -> tuple[Path, Path]:
    """A minimal split image (metadata + a rootfs with one file) for `lxc image import`."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_yaml = folder / "metadata.yaml"
    meta_yaml.write_text(
        "architecture: x86_64\ncreation_date: 1700000000\n"
        f"properties:\n  description: {json.dumps(description)}\n"
    )
    meta, rootfs = folder / "meta.tar", folder / "rootfs.tar"
    with tarfile.open(meta, "w") as tar:
        tar.add(meta_yaml, "metadata.yaml")
    etc = folder / "rootfs" / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "decoy").write_text(description + "\n")
    with tarfile.open(rootfs, "w") as tar:
        tar.add(folder / "rootfs", ".")
    return meta, rootfs


@dataclass
class Decoys:
    """LXD objects a user made (no `edibuild-` prefix, no labels), and how they looked."""

    lxd: Lxd
    project: str
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    seen: dict[str, str] = field(default_factory=dict)
    unaliased: str = ""

    @property
    def containers(self) -> list[str]:
        """A plain one, and one named like the project's configure containers but unprefixed."""
        return [f"decoy-{self.tag}", f"{names.safe_name(self.project)}-configure-{self.tag}"]

    @property
    def profile(self) -> str:
        """A profile named like a configure container's profile, without the prefix."""
        return f"{names.safe_name(self.project)}-configure-{self.tag}-resources"

    @property
    def alias(self) -> str:
        """The alias of an image of the user's."""
        return f"decoy-{self.tag}"

    def make(self, tmp: Path) -> None:
        """Create the decoys: empty containers, a profile, an aliased and an unaliased image."""
        for name in self.containers:
            self.lxd.lxc("init", "--empty", name)
        self.lxd.lxc("profile", "create", self.profile)
        meta, rootfs = _tiny_image(tmp / "decoy-image", f"the user's image {self.tag}")
        self.lxd.lxc("image", "import", str(meta), str(rootfs), "--alias", self.alias)
        # Unaliased, and its description names the project: still the user's, not ours.
        meta2, rootfs2 = _tiny_image(tmp / "decoy-image2", f"edibuild {self.project} {self.tag}")
        out = self.lxd.lxc("image", "import", str(meta2), str(rootfs2))
        self.unaliased = re.findall(r"[0-9a-f]{64}", out)[0]
        self.seen = self.look()

    def look(self) -> dict[str, str]:
        """How each decoy looks now (what a change would show)."""
        seen = {}
        for name in self.containers:
            seen[f"container {name}"] = self._json(f"/1.0/instances/{name}", "config")
        seen[f"profile {self.profile}"] = self._json(f"/1.0/profiles/{self.profile}", "config")
        seen[f"image {self.alias}"] = self._json(f"/1.0/images/aliases/{self.alias}", "target")
        seen["unaliased image"] = self._json(f"/1.0/images/{self.unaliased}", "fingerprint")
        return seen

    def _json(self, path: str, key: str) -> str:
        try:
            return json.dumps(self.lxd.get(path).get(key), sort_keys=True)
        except BackendError as exc:
            return f"gone: {exc}"

    def touched(self) -> list[str]:
        """The decoys that changed or went away."""
        now = self.look()
        return [
            f"decoy {what} was touched" for what in self.seen if now.get(what) != self.seen[what]
        ]

    def remove(self) -> None:
        """Delete the decoys (the harness's own cleanup)."""
        for name in self.containers:
            self.lxd.lxc("delete", "--force", name, check=False)
        self.lxd.lxc("profile", "delete", self.profile, check=False)
        self.lxd.lxc("image", "delete", self.alias, check=False)
        if self.unaliased:
            self.lxd.lxc("image", "delete", self.unaliased, check=False)


# -- a private LXD daemon: one the harness may stop without disturbing anybody --------------


class PrivateLxd:
    """An LXD daemon in a directory of its own, started the way edibuild starts one."""

    def __init__(self) -> None:
        # Short: a unix socket path has at most 108 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="edflt-", dir="/tmp"))
        self.base.chmod(0o711)  # the containers' root (an unprivileged uid) passes through
        self.dir = self.base / "lxd"
        self.dir.mkdir(mode=0o711)
        self.lxd = Lxd(self.dir / "unix.socket")
        self.endpoint = Endpoint.local(self.lxd.socket, "lxd", "$LXD_DIR")

    def start(self) -> None:
        """Start (or start again) and initialise the daemon (edibuild/host/lxd_service.py)."""
        lxd_service.ensure_lxd(self.base / "repo", [self.endpoint])

    def pid(self) -> int | None:
        """The daemon's pid (the `lxd` process whose LXD_DIR is ours)."""
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                comm = Path(f"/proc/{entry.name}/comm").read_text().strip()
                environ = Path(f"/proc/{entry.name}/environ").read_bytes()
            except OSError:
                continue
            if comm == "lxd" and f"LXD_DIR={self.dir}".encode() in environ.split(b"\0"):
                return int(entry.name)
        return None

    def stop(self, how: signal.Signals) -> None:
        """Stop the daemon in the middle of things: SIGTERM (a service stop) or SIGKILL."""
        pid = self.pid()
        assert pid is not None, "the private LXD is not running"
        os.kill(pid, how)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and orphans.alive(pid):
            time.sleep(0.2)

    def close(self) -> None:
        """Shut the daemon down (its containers with it), unmount, remove the directory."""
        if self.pid() is not None:
            subprocess.run(["lxd", "shutdown", "--timeout", "60"], env=self.lxd.env,
                           capture_output=True, timeout=120, check=False)  # fmt: skip
            pid = self.pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        for point in mounts_under([self.base]):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


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


def processes(marks: Iterable[str], paths: Iterable[Path]) -> list[str]:
    """Processes of the harness's doit runs: marked as theirs, or naming their paths."""
    wanted = set(marks)
    prefixes = [os.fspath(p) for p in paths]
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
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
