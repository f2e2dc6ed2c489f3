"""Pure parts of fsimage: derived ids, tree measurement, size estimates, dumpe2fs parsing."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from edibuild.image.fsimage import (
    BLOCK,
    Usage,
    derive_hex,
    derive_uuid,
    ext4_inodes,
    ext4_minimum,
    ext4_needed,
    parse_used_inodes,
    usage,
    vfat_needed,
    walk,
)
from edibuild.image.layout import MiB

DUMPE2FS = """\
Inode count:              38400
Inodes per group:         7680
First inode:              11
Group 0: (Blocks 0-32767) csum 0x0660
  Free inodes:
Group 1: (Blocks 32768-65535) csum 0xf2ea
  Free inodes: 7681-15360
Group 2: (Blocks 65536-98303) csum 0xc09f [INODE_UNINIT]
  Free inodes: 15361-23040, 23042
Group 3: (Blocks 98304-131071) csum 0x1c22 [INODE_UNINIT, BLOCK_UNINIT]
  Free inodes: 23043-38400
"""


def test_derived_identifiers_are_stable_and_distinct() -> None:
    """Same key and purpose give the same id; another key or purpose another one."""
    first = derive_uuid("key1", "root:uuid")
    assert first == derive_uuid("key1", "root:uuid")
    assert first != derive_uuid("key2", "root:uuid") != derive_uuid("key1", "boot:uuid")
    assert uuid.UUID(first).version == 4
    volume = derive_hex("key1", "boot:volume_id")
    assert len(volume) == 8 and int(volume, 16) >= 0
    assert volume == derive_hex("key1", "boot:volume_id")


def test_usage_counts_blocks_entries_and_hard_links_once(tmp_path: Path) -> None:
    """Files round up to 4 KiB blocks; hard links count once; short symlinks cost no block."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "small").write_bytes(b"x")
    (tmp_path / "big").write_bytes(b"y" * (BLOCK + 1))
    os.link(tmp_path / "big", tmp_path / "d" / "link")
    (tmp_path / "short").symlink_to("big")
    (tmp_path / "long").symlink_to("z" * 100)
    measured = usage(tmp_path)
    # root dir + d + small + big (once) + short + long
    assert measured.entries == 6
    # root dir, d, small, big (2 blocks), long symlink
    assert measured.data == BLOCK * 6
    assert usage(None) == Usage(0, 0)


def test_walk_is_sorted(tmp_path: Path) -> None:
    """Entries come in a fixed order whatever order the filesystem lists them in."""
    for name in ("b", "a", "c"):
        (tmp_path / name).write_text(name)
    assert [p.name for p, _ in walk(tmp_path)] == ["a", "b", "c"]


def test_ext4_estimate_leaves_room_for_metadata() -> None:
    """The estimate covers data, inode tables and the journal, and grows with content."""
    small, large = Usage(100 * MiB, 5000), Usage(900 * MiB, 30000)
    for content in (small, large):
        needed = ext4_needed(content)
        assert needed > ext4_minimum(content, needed) >= content.data
        assert needed % BLOCK == 0
    assert ext4_needed(large) > ext4_needed(small)
    # roughly: 900 MiB of data does not need more than 1.15 GiB
    assert ext4_needed(large) < 1.15 * 1024 * MiB


def test_ext4_gets_enough_inodes_for_many_small_files() -> None:
    """Many tiny files raise the inode count above mke2fs' default ratio."""
    assert ext4_inodes(64 * MiB, Usage(MiB, 100)) == 64 * MiB // (16 * 1024)
    assert ext4_inodes(64 * MiB, Usage(MiB, 40000)) == 40000 + 10000 + 256


def test_vfat_estimate_is_above_the_data() -> None:
    """FAT needs its tables and whole clusters on top of the bytes."""
    content = Usage(40 * MiB, 300)
    assert vfat_needed(content) > 40 * MiB + 300 * BLOCK


def test_parse_used_inodes() -> None:
    """Used = inode 2 plus every inode from the first one that is not listed free."""
    used = parse_used_inodes(DUMPE2FS, Path("x.ext4"))
    assert used[:3] == [2, 11, 12]
    assert 7680 in used and 7681 not in used
    assert 23041 in used and 23042 not in used
    assert len(used) == 1 + (7680 - 10) + 1
