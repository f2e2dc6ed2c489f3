"""ext4 and vfat images from a directory tree, without mounting and without loop devices.

Bookworm's e2fsprogs (1.47.0) can only populate from a directory (`mkfs.ext4 -d DIR`), so
the rootfs tarball is unpacked first (as root, keeping owners, modes and xattrs). For
identical bytes from identical input every identifier is passed in (UUID, hash seed,
volume id), `E2FSPROGS_FAKE_TIME` fixes the superblock times, and a debugfs pass clamps
each inode's atime and ctime (copied from the unpacked tree, so otherwise the unpack
time) to SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edibuild import run as runner
from edibuild.errors import StageFailed
from edibuild.image.layout import KiB, MiB, align_up

BLOCK = 4 * KiB
INODE_SIZE = 256
DEFAULT_INODE_RATIO = 16 * KiB
# Journal blocks mke2fs picks for a filesystem of N 4 KiB blocks (ext2fs_default_journal_size).
JOURNAL_STEPS = ((32768, 1024), (256 * 1024, 4096), (512 * 1024, 8192), (4096 * 1024, 16384))


@dataclass(frozen=True)
class Usage:
    """What a tree needs: bytes in whole 4 KiB blocks, and how many inodes (entries)."""

    data: int
    entries: int


@dataclass(frozen=True)
class Ext4Params:
    """Everything that makes an ext4 image's bytes reproducible."""

    label: str
    uuid: str
    hash_seed: str
    epoch: int
    options: tuple[str, ...] = ()


def derive_uuid(key: str, purpose: str) -> str:
    """Return a UUID (version 4 form) derived from a stage key, so rebuilds give the same one."""
    digest = hashlib.sha256(f"{key}\0{purpose}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def derive_hex(key: str, purpose: str, digits: int = 8) -> str:
    """Return `digits` hex digits derived from a stage key (vfat volume id, MBR disk id)."""
    return hashlib.sha256(f"{key}\0{purpose}".encode()).hexdigest()[:digits]


def unpack(tarball: Path, dest: Path, log: Path) -> None:
    """Unpack a (zstd) rootfs tarball into `dest` keeping owners, modes, xattrs and ACLs."""
    dest.mkdir(parents=True, exist_ok=True)
    compress = ["--zstd"] if tarball.name.endswith(".zst") else []
    runner.run(
        ["tar", *compress, "-x", "-p", "--same-owner", "--numeric-owner", "--xattrs",
         "--xattrs-include=*", "--acls", "-f", tarball, "-C", dest],
        log=log,
    )  # fmt: skip


def walk(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Yield every entry below `root` (not root itself) with its lstat, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            yield path, path.lstat()


def usage(root: Path | None) -> Usage:
    """Measure a tree the way a 4 KiB-block filesystem stores it (hard links counted once)."""
    if root is None:
        return Usage(0, 0)
    seen: set[int] = set()
    data, entries = BLOCK, 1
    for _, st in walk(root):
        if st.st_ino in seen:
            continue
        seen.add(st.st_ino)
        entries += 1
        if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            data += align_up(max(st.st_size, 1), BLOCK)
        elif stat.S_ISLNK(st.st_mode) and st.st_size >= 60:
            data += BLOCK  # longer targets do not fit in the inode
    return Usage(data, entries)


def ext4_inodes(size: int, content: Usage) -> int:
    """Inode count for an ext4 of `size` bytes: the default ratio, or more for many files."""
    return max(size // DEFAULT_INODE_RATIO, content.entries + content.entries // 4 + 256)


def ext4_minimum(content: Usage, size: int) -> int:
    """Lower bound of the bytes an ext4 of `size` needs for `content` (data, inodes, journal)."""
    blocks = size // BLOCK
    journal = next((j for limit, j in JOURNAL_STEPS if blocks < limit), 32768) * BLOCK
    return content.data + ext4_inodes(size, content) * INODE_SIZE + journal


def ext4_needed(content: Usage) -> int:
    """Bytes an ext4 needs for `content`, with room for metadata (bitmaps, descriptors)."""
    size = content.data + 8 * MiB
    for _ in range(3):  # the overhead grows with the size; three rounds settle it
        size = ext4_minimum(content, size) + size // 32 + 4 * MiB
    return align_up(size, BLOCK)


def vfat_needed(content: Usage) -> int:
    """Bytes a FAT filesystem needs for `content` (file tables, clusters up to 16 KiB)."""
    return align_up(content.data + content.entries * 12 * KiB + content.data // 64 + MiB, KiB)


def make_ext4(image: Path, size: int, tree: Path | None, params: Ext4Params, log: Path) -> None:
    """Create an ext4 image of `size` bytes holding `tree` (or empty), reproducibly."""
    env = {"E2FSPROGS_FAKE_TIME": str(params.epoch), "SOURCE_DATE_EPOCH": str(params.epoch)}
    content: list[runner.StrPath] = ["-d", tree] if tree is not None else []
    runner.run(
        ["mkfs.ext4", "-q", "-F", "-L", params.label, "-U", params.uuid,
         "-N", str(ext4_inodes(size, usage(tree))),
         "-E", f"root_owner=0:0,hash_seed={params.hash_seed}",
         *params.options, *content, image, f"{size // KiB}k"],
        log=log, env=env,
    )  # fmt: skip
    clamp_ext4_times(image, params.epoch, log)


def used_inodes(image: Path) -> list[int]:
    """Return the numbers of the inodes in use in an ext4 image (from dumpe2fs)."""
    return parse_used_inodes(runner.output(["dumpe2fs", image]), image)


def parse_used_inodes(text: str, image: Path) -> list[int]:
    """Return the used inodes from dumpe2fs output: the root and those not listed free."""

    def number(field: str) -> int:
        match = re.search(rf"^{field}:\s+(\d+)", text, re.M)
        if match is None:
            raise StageFailed(f"dumpe2fs printed no {field!r} for {image}")
        return int(match.group(1))

    free: set[int] = set()
    for match in re.finditer(r"^\s+Free inodes: (.*)$", text, re.M):
        for part in filter(None, (p.strip() for p in match.group(1).split(","))):
            low, _, high = part.partition("-")
            free.update(range(int(low), int(high or low) + 1))
    first, count = number("First inode"), number("Inode count")
    return [2] + [i for i in range(first, count + 1) if i not in free]


def clamp_ext4_times(image: Path, epoch: int, log: Path) -> None:
    """Set every used inode's atime and ctime to `epoch` (mtimes stay as in the tarball)."""
    inodes = used_inodes(image)
    script = "".join(f"sif <{ino}> atime @{epoch}\nsif <{ino}> ctime @{epoch}\n" for ino in inodes)
    commands = image.with_name(image.name + ".debugfs")
    commands.write_text(script)
    try:
        # debugfs echoes every command on stdout (two lines per inode, tens of thousands):
        # not for the log, which keeps the command line, its errors and a count.
        runner.run(
            ["debugfs", "-w", "-f", commands, image],
            log=log,
            capture=True,
            env={"E2FSPROGS_FAKE_TIME": str(epoch)},
        )
    finally:
        commands.unlink()
    with log.open("a") as f:
        f.write(f"# clamped the atime and ctime of {len(inodes)} inodes\n")


def ext4_free(image: Path) -> int:
    """Return the free bytes of an ext4 image (free blocks times block size)."""
    text = runner.output(["dumpe2fs", "-h", image])
    free = re.search(r"^Free blocks:\s+(\d+)", text, re.M)
    block = re.search(r"^Block size:\s+(\d+)", text, re.M)
    if free is None or block is None:
        raise StageFailed(f"cannot read the free space of {image} from dumpe2fs")
    return int(free.group(1)) * int(block.group(1))


def make_vfat(
    image: Path,
    size: int,
    tree: Path | None,
    label: str,
    volume_id: str,
    epoch: int,
    log: Path,
    options: tuple[str, ...] = (),
) -> list[str]:
    """Create a FAT image of `size` bytes holding `tree`; return the entries it had to skip.

    FAT has no symlinks, owners or device nodes: those are skipped (and reported). Files
    are copied directory by directory in sorted order, with their mtimes, in UTC.
    `options` go to mkfs.vfat (`[-F, "32"]`: FAT32, what PC firmware expects of an ESP).
    """
    runner.run(
        ["mkfs.vfat", "-C", "--invariant", "-i", volume_id, "-n", label, *options, image,
         str(size // KiB)],
        log=log,
    )  # fmt: skip
    if tree is None:
        return []
    env = {"MTOOLS_SKIP_CHECK": "1", "TZ": "UTC", "SOURCE_DATE_EPOCH": str(epoch)}
    skipped: list[str] = []
    directories: list[str] = []
    files: dict[str, list[str]] = {}
    for path, st in walk(tree):
        rel = path.relative_to(tree).as_posix()
        if stat.S_ISDIR(st.st_mode):
            directories.append(rel)
        elif stat.S_ISREG(st.st_mode):
            files.setdefault(path.parent.relative_to(tree).as_posix(), []).append(os.fspath(path))
        else:
            skipped.append(rel)
    if directories:  # parents come before their children
        runner.run(["mmd", "-i", image, *(f"::/{rel}" for rel in directories)], log=log, env=env)
    for parent, names in sorted(files.items()):
        target = "::/" if parent == "." else f"::/{parent}/"
        runner.run(["mcopy", "-i", image, "-m", *names, target], log=log, env=env)
    return skipped
