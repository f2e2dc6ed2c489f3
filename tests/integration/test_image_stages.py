"""The image stages on a real rootfs: partitions -> disk -> bmap -> mender, and a real boot.

The rootfs comes from EDIBUILD_TEST_ROOTFS (a rootfs.tar.zst with a kernel) or is made
once per session with mmdebstrap (a few minutes). Build functions are driven directly
with hand-made StageContexts; each stage's wall time is printed (`pytest -s`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from edibuild.config.project import Bootstrap, Project
from edibuild.config.sections import with_settings
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext
from edibuild.errors import ConfigError, StageFailed
from edibuild.image.fsimage import derive_hex
from stages import bmap, boottest, disk, mender, partitions
from tests.conftest import require_root, require_tool

pytestmark = pytest.mark.integration

MIRROR = "http://deb.debian.org/debian"
EPOCH = 1700000000
TIMINGS: dict[str, float] = {}
PACKAGES = "python3,systemd-sysv,linux-image-cloud-amd64,initramfs-tools,udev"  # virtio: qemu


def project(sections: Mapping[str, Json], name: str = "imgtest") -> Project:
    """A hand-made project (the loader is not needed to drive the stages)."""
    made = Project(
        name=name,
        file=Path(f"/projects/{name}.yml"),
        description="image stage test",
        parameters={},
        bootstrap=Bootstrap("amd64", "bookworm", MIRROR),
        lxd_profiles=(),
        playbooks=(),
        sections=dict(sections),
    )
    return with_settings(made)


LAYOUT = {
    "table": "gpt",
    "alignment": "4MiB",
    "partitions": {
        "10_boot": {"filesystem": "vfat", "label": "BOOT", "size": "auto", "margin": "8MiB",
                    "content": "/boot", "bootable": True},
        "20_root": {"label": "rootfs", "size": "auto", "margin": "64MiB"},
        "30_data": {"label": "data", "size": "16MiB"},
        "40_spare": {"filesystem": "none", "size": "4MiB"},
    },
}  # fmt: skip
MENDER = {"device_type": "qemux86-64", "artifact_name": "imgtest-1.0"}


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bookworm rootfs.tar.zst carrying a kernel and an initrd."""
    given = os.environ.get("EDIBUILD_TEST_ROOTFS")
    if given:
        return Path(given)
    require_root()
    require_tool("mmdebstrap", "zstd")
    tar = tmp_path_factory.mktemp("rootfs") / "rootfs.tar"
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
    subprocess.run(["mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
                    str(tar), MIRROR], check=True, env=env, capture_output=True)  # fmt: skip
    subprocess.run(["zstd", "-q", "--rm", str(tar)], check=True)
    return tar.with_suffix(".tar.zst")


class Builder:
    """Runs stage build functions the way the engine does, with hand-made contexts."""

    def __init__(self, base: Path, proj: Project, rootfs: Path) -> None:
        self.base, self.project = base, proj
        self.outputs: dict[str, dict[str, Path]] = {"export": {"rootfs": rootfs}}
        self.infos: dict[str, Json] = {"export": {}}

    def context(self, stage: Stage, key: str) -> StageContext:
        work = self.base / f"{stage.name}-{key}"
        work.mkdir(parents=True)
        return StageContext(
            project=self.project, stage=stage, key=key, workdir=work, log=work / "log",
            inputs=self.outputs, input_info=self.infos, source_date_epoch=EPOCH,
            output_names=dict(stage.outputs(self.project)),
        )  # fmt: skip

    def build(self, stage: Stage, key: str = "k1") -> Json:
        """Build `stage`, time it, record its outputs for the stages downstream."""
        ctx = self.context(stage, key)
        started = time.monotonic()
        info = stage.build(ctx)
        TIMINGS[f"{stage.name}:{self.project.name}:{key}"] = time.monotonic() - started
        json.dumps(info)  # the info must be JSON data
        self.outputs[stage.name] = {n: ctx.output(n) for n in ctx.output_names}
        self.infos[stage.name] = info
        for path in self.outputs[stage.name].values():
            assert path.is_file(), f"{stage.name} did not write {path}"
        return info


def sha256(path: Path) -> str:
    """Digest of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, rootfs: Path) -> Iterator[Builder]:
    """partitions -> disk -> bmap -> mender on the real rootfs, with a GPT layout."""
    require_root()
    require_tool("mkfs.ext4", "debugfs", "mkfs.vfat", "mcopy", "sfdisk", "bmaptool",
                 "mender-artifact", "zstd")  # fmt: skip
    base = tmp_path_factory.mktemp("image")
    builder = Builder(base, project({"layout": LAYOUT, "mender": MENDER}), rootfs)
    for stage in (partitions.STAGE, disk.STAGE, bmap.STAGE, mender.STAGE):
        builder.build(stage)
    yield builder
    print("\nstage timings:", {k: round(v, 1) for k, v in TIMINGS.items()})
    shutil.rmtree(base, ignore_errors=True)


def debugfs(image: Path, command: str) -> str:
    """Run one read-only debugfs command on an ext4 image and return its output."""
    return subprocess.run(["debugfs", "-R", command, str(image)], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip


def test_partition_images_hold_the_split_rootfs(built: Builder) -> None:
    """root.ext4 holds the rootfs minus /boot, boot.vfat holds /boot, data is empty ext4."""
    out = built.outputs["partitions"]
    assert set(out) == {"boot", "root", "data"}
    root, boot = out["root"], out["boot"]
    subprocess.run(["e2fsck", "-fn", str(root)], check=True, capture_output=True)
    subprocess.run(["fsck.vfat", "-n", str(boot)], check=True, capture_output=True)
    assert debugfs(root, "cat /etc/mender/artifact_info") == "artifact_name=imgtest-1.0\n"
    assert "vmlinuz-" not in debugfs(root, "ls /boot")  # the mount point is empty
    shadow = debugfs(root, "stat /etc/shadow")
    assert re.search(r"Mode:\s+0640", shadow) and re.search(r"Group:\s+42\b", shadow)
    listing = subprocess.run(["mdir", "-b", "-i", str(boot), "::/"], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    assert re.search(r"vmlinuz-\S+-amd64", listing)
    info = built.infos["partitions"]
    assert info["root"]["free"] >= 64 * 1024 * 1024 * 0.8  # the margin is free space
    assert out["data"].stat().st_size == 16 * 1024 * 1024


def test_disk_image_has_the_table_and_partitions_at_their_offsets(built: Builder) -> None:
    """The GPT lists every partition where the plan put it, with the images' bytes there."""
    image = built.outputs["disk"]["image"]
    dump = subprocess.run(["sfdisk", "--json", str(image)], check=True, capture_output=True)
    table = json.loads(dump.stdout)["partitiontable"]
    assert table["label"] == "gpt"
    planned = built.infos["disk"]["partitions"]
    assert [p["start"] for p in table["partitions"]] == [p["start"] // 512 for p in planned]
    assert [p["name"] for p in table["partitions"]] == ["BOOT", "rootfs", "data", "spare"]
    assert planned[0]["start"] == 4 * 1024 * 1024
    root = built.outputs["partitions"]["root"]
    with image.open("rb") as f:
        f.seek(planned[1]["start"])
        assert hashlib.sha256(f.read(root.stat().st_size)).hexdigest() == sha256(root)
    assert image.stat().st_blocks * 512 < image.stat().st_size  # holes kept


def test_bmaptool_copy_reproduces_the_image(built: Builder, tmp_path: Path) -> None:
    """bmaptool copy with the bmap writes back the very same bytes."""
    image, target = built.outputs["disk"]["image"], tmp_path / "flashed.img"
    subprocess.run(["bmaptool", "copy", "--bmap", str(built.outputs["bmap"]["bmap"]),
                    str(image), str(target)], check=True, capture_output=True)  # fmt: skip
    assert sha256(target) == sha256(image)


def test_mender_artifact_reads_back(built: Builder) -> None:
    """mender-artifact read shows the name, the device type and the rootfs checksum."""
    text = subprocess.run(["mender-artifact", "read", str(built.outputs["mender"]["artifact"])],
                          check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert re.search(r"Name:\s+imgtest-1\.0", text)
    assert "qemux86-64" in text
    assert sha256(built.outputs["partitions"]["root"]) in text


def test_partition_images_are_reproducible(built: Builder, rootfs: Path) -> None:
    """A second build of the same input with the same key gives bit-identical images."""
    again = Builder(built.base / "again", built.project, rootfs)
    again.build(partitions.STAGE)
    first, second = built.outputs["partitions"], again.outputs["partitions"]
    same = {name: sha256(first[name]) == sha256(second[name]) for name in first}
    print("\nreproducible partition images:", same)
    assert all(same.values()), same


def test_fixed_size_too_small_is_a_config_error(built: Builder, rootfs: Path) -> None:
    """A fixed size smaller than the content fails with a message naming the partition."""
    layout = {"partitions": {"10_boot": {"filesystem": "vfat", "size": "8MiB", "content": "/boot"},
                             "20_root": {"size": "auto"}}}  # fmt: skip
    small = Builder(built.base / "small", project({"layout": layout}), rootfs)
    with pytest.raises(ConfigError, match=r"10_boot is 8 MiB, but its content /boot needs"):
        small.build(partitions.STAGE)


def test_boot_without_the_marker_fails_with_the_console_tail(built: Builder) -> None:
    """A marker that never shows fails the stage in time, with the console's last lines."""
    require_tool("qemu-system-x86_64", "timeout")
    built.project = project({"layout": LAYOUT, "boottest": {"timeout": 15, "expect": "NEVER"}})
    started = time.monotonic()
    with pytest.raises(StageFailed, match=r"did not show 'NEVER'.*within 15 s") as failure:
        built.build(boottest.STAGE, key="k2")
    assert time.monotonic() - started < 45
    assert len(str(failure.value).splitlines()) > 10  # the console's tail is in the message
    assert not (built.base / "boottest-k2" / "qemu.pid").exists()


def test_msdos_disk_from_the_same_partition_images(built: Builder) -> None:
    """The same partitions in an MBR table: dos label, fixed disk id, boot flag, types."""
    msdos = Builder(built.base / "msdos", project({"layout": {**LAYOUT, "table": "msdos"}}),
                    built.outputs["export"]["rootfs"])  # fmt: skip
    msdos.outputs["partitions"] = built.outputs["partitions"]
    msdos.build(disk.STAGE, key="k3")
    image = msdos.outputs["disk"]["image"]
    dump = subprocess.run(["sfdisk", "--json", str(image)], check=True, capture_output=True)
    table = json.loads(dump.stdout)["partitiontable"]
    assert table["label"] == "dos"
    assert table["id"] == "0x" + derive_hex("k3", "disk")
    assert [p["type"] for p in table["partitions"]] == ["c", "83", "83", "83"]
    assert table["partitions"][0].get("bootable") is True
    assert image.stat().st_size == msdos.infos["disk"]["disk_size"]
