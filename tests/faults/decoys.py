"""The fault harness's stand-ins: decoys (the user's own LXD objects, which edibuild must never
touch) and a private LXD daemon a cell may stop without disturbing anybody."""

from __future__ import annotations

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
from dataclasses import dataclass, field
from pathlib import Path

from edibuild import orphans
from edibuild.host import lxd_service
from edibuild.lxd import names
from edibuild.lxd.endpoints import Endpoint
from edibuild.lxd.errors import BackendError
from tests.faults.probes import Lxd, mounts_under

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
