"""A boot file copied out of an ext4 image onto a full disk is a full disk, not a broken VM.

debugfs exits 0 when its write fails; the boot test once started qemu on a truncated
initrd and reported "qemu exited with code 1" (found by the fault matrix, boottest / full
scratch).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from edibuild import run as runner
from edibuild.image import bootfiles
from edibuild.space import is_full
from tests.conftest import require_root, require_tool

pytestmark = pytest.mark.integration


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """An ext4 image with a 3 MiB /boot/initrd.img."""
    require_tool("mkfs.ext4", "debugfs")
    tree = tmp_path / "tree" / "boot"
    tree.mkdir(parents=True)
    (tree / "initrd.img").write_bytes(os.urandom(3 << 20))
    image = tmp_path / "root.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-d", tmp_path / "tree", image, "16M"], check=True)
    return image


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs."""
    require_root()
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "edibuild-test", folder], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=True)


def ctx() -> SimpleNamespace:
    return SimpleNamespace(run=lambda argv: runner.run(argv))


def test_a_whole_copy_passes(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "initrd.img"
    bootfiles._extract(ctx(), image, "ext4", "/boot/initrd.img", target)  # type: ignore[arg-type]
    assert target.stat().st_size == 3 << 20


def test_a_copy_cut_short_by_a_full_disk_is_a_full_disk(image: Path, small_disk: Path) -> None:
    target = small_disk / "initrd.img"
    with pytest.raises(OSError) as caught:
        bootfiles._extract(ctx(), image, "ext4", "/boot/initrd.img", target)  # type: ignore[arg-type]
    assert caught.value.errno == errno.ENOSPC and is_full(caught.value)
    assert str(target) in str(caught.value)
