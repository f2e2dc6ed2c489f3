"""The Raspberry Pi projects: shared bootstrap, buster's plan, and pi3 bookworm end to end.

The end-to-end test runs the real `doit image:pi3-bookworm-arm64` on this amd64 host
(arm64 bootstrap and Ansible under qemu-user emulation, then the image stages and a boot
of the image's own firmware files in `qemu-system-aarch64 -M raspi3b` to a login
prompt), then copies the image with `bmaptool copy` onto a file standing in for an SD
card. That build is far beyond CI's budget (measured on this 2-core host under load:
bootstrap 220 s, configure over 30 min, most of it mkinitramfs with MODULES=most running
under qemu-user), so it runs only with EDIBUILD_FULL_PI=1; CI runs the config and plan
tests. Timings are printed (pytest -s) and kept in the stage manifests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edibuild.config import load_project
from edibuild.config.host import Host
from edibuild.config.project import Project
from stages import bootstrap
from tests.conftest import require_root, require_tool

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROJECTS = REPO / "projects"
NAME = "pi3-bookworm-arm64"
# What `image:NAME` runs (`boottest:NAME` boots it, a task of its own).
STAGES = ["bootstrap", "import", "configure", "export", "partitions", "disk", "bmap",
          "mender"]  # fmt: skip


def load(name: str) -> Project:
    """Load a shipped project as the build would."""
    return load_project(PROJECTS / f"{name}.yml", shipped_dir=PROJECTS, host=Host.detect())


def doit(tmp: Path, cache: Path, *args: str, timeout: float = 3600) -> str:
    """Run the real doit on the shipped projects with private artifacts, state and cache."""
    env = {**os.environ, "EDIBUILD_ARTIFACTS": str(tmp / "artifacts"),
           "EDIBUILD_STATE": str(tmp / "state"), "EDIBUILD_CACHE": str(cache)}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


@pytest.mark.parametrize("suite", ["bookworm"])
def test_pi3_and_pi4_share_the_bootstrap(suite: str) -> None:
    """Same bootstrap slice and plugins, so one bootstrap artifact serves both boards."""
    pi3, pi4 = load(f"pi3-{suite}-arm64"), load(f"pi4-{suite}-arm64")
    assert bootstrap.STAGE.config(pi3) == bootstrap.STAGE.config(pi4)
    assert bootstrap.STAGE.plugins(pi3) == bootstrap.STAGE.plugins(pi4)
    slice_ = bootstrap.STAGE.config(pi3)
    assert isinstance(slice_, dict) and "non-free-firmware" in slice_["components"]


def test_boards_differ_where_they_must() -> None:
    """Hostname, Mender device type and boot test machine follow the board."""
    pi3, pi4 = load("pi3-bookworm-arm64"), load("pi4-bookworm-arm64")
    for proj, device, machine in ((pi3, "raspberrypi3", "raspi3b"), (pi4, "raspberrypi4", "virt")):
        assert proj.section("mender")["device_type"] == device
        assert proj.section("boottest")["machine"] == machine
        base = {n.key: n for n in proj.playbooks}["100_base_system"]
        assert base.parameters["hostname"] == device


def test_pi3_buster_plans(tmp_path: Path) -> None:
    """buster (archive.debian.org) loads, validates and plans every stage without a mirror."""
    proj = load("pi3-buster-arm64")
    assert proj.bootstrap.mirror == "http://archive.debian.org/debian"
    assert proj.bootstrap.components == ("main", "non-free")
    why = doit(tmp_path, tmp_path / "cache", "why:pi3-buster-arm64", timeout=120)
    for stage in STAGES:
        assert f"{stage}:pi3-buster-arm64 would run" in why, why


@pytest.mark.full_pi
def test_pi3_bookworm_builds_boots_and_copies(tmp_path: Path, shared_cache: Path) -> None:
    """`doit image:pi3-bookworm-arm64 boottest:...` end to end (raspi3b), bmap round trip."""
    require_root()
    require_tool("mmdebstrap", "lxc", "mkfs.ext4", "mkfs.vfat", "sfdisk", "bmaptool",
                 "mender-artifact", "qemu-system-aarch64", "qemu-aarch64-static")  # fmt: skip
    started = time.monotonic()
    doit(tmp_path, shared_cache, f"image:{NAME}", f"boottest:{NAME}")
    print(f"\ndoit image:{NAME}: {time.monotonic() - started:.0f} s")
    artifacts = tmp_path / "artifacts" / NAME
    for stage in [*STAGES, "boottest"]:
        manifest = json.loads((artifacts / f"{stage}.manifest.json").read_text())
        print(f"  {stage}: {manifest.get('seconds', manifest.get('duration'))}")
    result = json.loads((artifacts / "boottest.json").read_text())
    assert result["booted"] is True and result["machine"] == "raspi3b"
    assert "root=LABEL=rootfs" in result["cmdline"]
    console = (artifacts / "boottest-console.log").read_text(errors="replace")
    assert "Machine model: Raspberry Pi 3 Model B" in console and "raspberrypi3 login:" in console
    card = tmp_path / "sdcard.img"
    subprocess.run(["bmaptool", "copy", "--bmap", artifacts / f"{NAME}.bmap",
                    artifacts / f"{NAME}.img", card], check=True, capture_output=True)  # fmt: skip
    assert card.read_bytes() == (artifacts / f"{NAME}.img").read_bytes()
