"""Plan-time behaviour of the image stages: outputs, config slices, tools, enabling, errors."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from edibuild.config.project import Bootstrap, Project
from edibuild.config.sections import with_settings
from edibuild.data import Json
from edibuild.errors import ConfigError
from edibuild.image.layout import Layout, MiB, place
from edibuild.image.mender import artifact_info
from stages import bmap, boottest, disk, mender, partitions

LAYOUT = {
    "partitions": {
        "10_boot": {"filesystem": "vfat", "label": "BOOT", "size": "64MiB",
                    "content": "/boot/firmware", "bootable": True},
        "20_root": {"label": "rootfs", "size": "auto"},
        "30_spare": {"filesystem": "none", "size": "8MiB"},
    }
}  # fmt: skip


def parse_layout(proj: Project) -> Layout:
    """The project's layout, parsed as the loader parses it."""
    layout = with_settings(proj).layout
    assert layout is not None
    return layout


def project(arch: str = "arm64", **sections: Json) -> Project:
    """A hand-made project with the given sections."""
    return with_settings(Project(
        name="pi3", file=Path("pi3.yml"), description="", parameters={},
        bootstrap=Bootstrap(arch, "bookworm", "http://deb.debian.org/debian"),
        lxd_profiles=(), playbooks=(), sections={"layout": LAYOUT, **sections},
    ))  # fmt: skip


def test_outputs_follow_the_layout_and_the_project_name() -> None:
    """One image per partition with a filesystem; the disk artifacts carry the project name."""
    proj = project()
    assert partitions.STAGE.outputs(proj) == {"boot": "boot.vfat", "root": "root.ext4"}
    assert disk.STAGE.outputs(proj) == {"image": "pi3.img"}
    assert bmap.STAGE.outputs(proj) == {"bmap": "pi3.bmap"}
    assert mender.STAGE.outputs(proj) == {"artifact": "pi3.mender"}
    stages = (partitions.STAGE, disk.STAGE, bmap.STAGE, mender.STAGE, boottest.STAGE)
    assert all(stage.image_output for stage in stages)
    assert [s.upstream for s in stages[:4]] == [("export",), ("partitions",), ("disk",),
                                                ("partitions",)]  # fmt: skip


def test_config_slices_change_only_with_what_they_depend_on() -> None:
    """A layout edit changes partitions and disk slices, not bmap's; mender's name changes
    the root filesystem (artifact_info) too."""
    base = project(mender={"device_type": "raspberrypi3", "artifact_name": "v1"})
    edited = with_settings(Project(**{**vars(base), "sections": {**base.sections, "layout": {
        "table": "gpt", "partitions": LAYOUT["partitions"]}}}))  # fmt: skip
    renamed = with_settings(Project(**{**vars(base), "sections": {**base.sections, "mender": {
        "device_type": "raspberrypi3", "artifact_name": "v2"}}}))  # fmt: skip
    for stage in (partitions.STAGE, disk.STAGE):
        assert stage.config(base) != stage.config(edited)
    assert bmap.STAGE.config(base) == bmap.STAGE.config(edited) == {}
    assert mender.STAGE.config(base) == mender.STAGE.config(edited)
    assert partitions.STAGE.config(base) != partitions.STAGE.config(renamed)
    assert disk.STAGE.config(base) == disk.STAGE.config(renamed)


def test_tools_name_their_debian_packages() -> None:
    """Only the tools of the filesystems in use are needed, each with its package."""
    tools = {t.command: t.package for t in partitions.STAGE.tools(project())}
    assert tools["mkfs.vfat"] == "dosfstools" and tools["mcopy"] == "mtools"
    assert tools["mkfs.ext4"] == "e2fsprogs" and tools["zstd"] == "zstd"
    assert {t.package for t in disk.STAGE.tools(project())} == {"fdisk"}
    assert {t.package for t in bmap.STAGE.tools(project())} == {"bmap-tools", "coreutils"}


def test_mender_and_boottest_are_enabled_by_their_sections() -> None:
    """No section, no stage."""
    assert not mender.STAGE.enabled(project())
    assert mender.STAGE.enabled(project(mender={"device_type": "a", "artifact_name": "b"}))
    assert not boottest.STAGE.enabled(project("amd64"))
    assert boottest.STAGE.enabled(project("amd64", boottest={}))
    assert boottest.STAGE.config(project("amd64", boottest={})) == {
        "timeout": 180, "expect": "login:", "memory": 1024, "append": ""}  # fmt: skip


@pytest.mark.parametrize(
    ("section", "pattern"),
    [
        ({"device_type": "pi"}, r"mender.artifact_name: is required"),
        ({"device_type": "pi", "artifact_name": "a b"}, r"without spaces"),
        ({"device_type": "pi", "artifact_name": "a", "x": 1}, r"unknown key 'x'"),
        ("pi", r"must be a mapping"),
    ],
)
def test_bad_mender_sections(section: Json, pattern: str) -> None:
    """Mistakes in the mender section are ConfigErrors at plan time."""
    with pytest.raises(ConfigError, match=pattern):
        mender.STAGE.config(project(mender=section))


def test_mender_device_types_may_be_a_list() -> None:
    """Several device types become several -t options."""
    settings = project(mender={"device_type": ["a", "b"], "artifact_name": "n"}).mender
    assert settings is not None and settings.device_types == ("a", "b")
    assert artifact_info(settings) == "artifact_name=n\n"


@pytest.mark.parametrize(
    ("arch", "section", "pattern"),
    [
        ("riscv64", {}, r"amd64 and arm64 images only"),
        ("amd64", {"timeout": -1}, r"boottest.timeout: -1 is out of range"),
        ("amd64", {"expect": ""}, r"boottest.expect: must be a console marker, not empty"),
        ("amd64", {"wait": 3}, r"unknown key 'wait'"),
    ],
)
def test_bad_boottest_sections(arch: str, section: Json, pattern: str) -> None:
    """Mistakes in the boottest section are ConfigErrors at plan time."""
    with pytest.raises(ConfigError, match=pattern):
        project(arch, boottest=section)


def test_sfdisk_script_msdos_and_gpt() -> None:
    """Fixed disk ids, sector offsets, types and the boot flag."""
    layout = parse_layout(project())
    plan = place(layout, {"boot": 64 * MiB, "root": 100 * MiB, "spare": 8 * MiB})
    script = disk.sfdisk_script(plan, "key")
    assert script.startswith("label: dos\nlabel-id: 0x")
    assert "start=8192, size=131072, type=c, bootable" in script
    assert script == disk.sfdisk_script(plan, "key") != disk.sfdisk_script(plan, "other")
    gpt = Project(**{**vars(project()), "sections": {"layout": {**LAYOUT, "table": "gpt"}}})
    gplan = place(parse_layout(gpt), {"boot": 64 * MiB, "root": 100 * MiB, "spare": 8 * MiB})
    gscript = disk.sfdisk_script(gplan, "key")
    assert "label: gpt" in gscript and 'name="rootfs"' in gscript
    assert "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4" in gscript


def test_copy_sparse_keeps_holes(tmp_path: Path) -> None:
    """Only the data extents are written, at the offset; holes stay holes."""
    source, target = tmp_path / "src", tmp_path / "dst"
    with source.open("wb") as f:
        f.truncate(8 * MiB)
        f.seek(3 * MiB)
        f.write(b"data")
    with target.open("wb") as f:
        f.truncate(16 * MiB)
    written = disk.copy_sparse(source, target, 4 * MiB)
    assert 0 < written <= MiB  # only the data block(s), not 8 MiB
    blob = target.read_bytes()
    assert blob[7 * MiB : 7 * MiB + 4] == b"data" and blob.count(0) == len(blob) - 4
    assert target.stat().st_blocks * 512 <= 2 * MiB


def test_copy_sparse_without_copy_file_range_copies_through_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across file systems the kernel refuses (EXDEV): the same bytes, zero chunks left out."""

    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(disk.os, "copy_file_range", refuse)
    source, target = tmp_path / "src", tmp_path / "dst"
    source.write_bytes(bytes(2 * MiB) + b"tail")
    with target.open("wb") as f:
        f.truncate(8 * MiB)
    assert disk.copy_sparse(source, target, MiB) == 4  # the zero chunks are not written
    blob = target.read_bytes()
    assert blob[3 * MiB : 3 * MiB + 4] == b"tail" and blob.count(0) == len(blob) - 4
