"""The disk layout (project section `layout`): its model and the partition arithmetic.

A layout is declarative and ordered by the `NN_name` keys of its partitions:

    layout:
      table: msdos            # or gpt (default msdos: the Raspberry Pi needs it)
      alignment: 4MiB         # partition starts and auto sizes are rounded to this
      partitions:
        10_boot: {filesystem: vfat, label: BOOT, size: 256MiB, content: /boot/firmware,
                  bootable: true}
        20_root: {filesystem: ext4, label: rootfs, size: auto, margin: 300MiB}
        30_data: {filesystem: ext4, label: data, size: 64MiB}

Partition keys: `filesystem` (ext4, vfat, none; default ext4), `label`, `type` (linux,
vfat, efi, swap, bios; default from the filesystem), `size` (bytes, `256MiB`, or
`auto` = content plus `margin`, rounded up to the alignment), `margin`, `content` (the
rootfs subtree the partition holds; the partition named `root` holds `/` by default:
the whole tree minus the other partitions' contents), `bootable`, `start` (a fixed
offset) and `options` (extra mkfs arguments). Without `content` a partition is empty.

A second root slot for A/B updates (Mender) is a partition that copies the root one:

    layout:
      table: gpt
      partitions:
        20_root_a: {label: rootfs, size: 2GiB, content: /}
        30_root_b: {copy_of: root_a}

A copy has the root partition's size, type and file system: the disk stage writes the
root image into both, so a fresh device boots from either. It takes only `copy_of`,
`label` (its GPT partition name, by default its own name: the slots must be told apart
by name, since both file systems carry the root's label) and `start`. Copies need a
GPT table and a root partition of fixed size (every later version's root image must fit
the partitions of the devices in the field).

Sizes are whole numbers of bytes, computed exactly (`1.5GiB` is 1610612736, no float
rounding), at most MAX_SIZE; a partition must end within what its table addresses
(MBR: 2 TiB with 512-byte sectors; GPT: TABLE_LIMIT["gpt"]). `bootable` is true or
false. Labels are plain text: no control characters, and none of the characters the
file system or the sfdisk script cannot hold (LABEL_FORBIDDEN); lengths are counted
the way the file system stores them (ext4: UTF-8 bytes; vfat: bytes; GPT: UTF-16 units).

The section is read and checked by edibuild/image/layout_parse.py; this module holds
what the stages need of it (the Layout, the placing of partitions on the disk).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from edibuild.config.reader import Where
from edibuild.data import Json
from edibuild.errors import ConfigError, Location

SECTOR = 512
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
# The backup GPT at the end of the disk: header plus 128 entries of 128 bytes.
GPT_TAIL = 33 * SECTOR
DEFAULT_ALIGNMENT = 4 * MiB

TABLES = ("msdos", "gpt")
FILESYSTEMS = ("ext4", "vfat", "none")
# Partition type name -> (MBR type byte, GPT type GUID).
PART_TYPES: Mapping[str, tuple[str, str]] = {
    "linux": ("83", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    "vfat": ("c", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
    "efi": ("ef", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
    "swap": ("82", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
    "bios": ("da", "21686148-6449-6E6F-744E-656564454649"),
}
DEFAULT_TYPE = {"ext4": "linux", "vfat": "vfat", "none": "linux"}
LABEL_MAX = {"ext4": 16, "vfat": 11, "none": 36}
GPT_NAME_MAX = 36  # UTF-16 code units of a GPT partition name
# Characters a label cannot hold: vfat's reserved ones (mkfs.vfat refuses them), and on
# every file system the quote and backslash that would end or escape the GPT name in the
# sfdisk script edibuild writes.
LABEL_FORBIDDEN = {"ext4": '"\\', "vfat": '"\\*+,./:;<=>?[]|', "none": '"\\'}
TIB = 1024**4
# The end of the last partition: what a table can address with 512-byte sectors (MBR:
# 32-bit sector numbers), and a sane cap for GPT images built as (sparse) files.
TABLE_LIMIT = {"msdos": 2 * TIB, "gpt": 64 * TIB}
MAX_SIZE = max(TABLE_LIMIT.values())
MBR_MAX_PARTITIONS = 4


@dataclass(frozen=True)
class Partition:
    """One partition as configured; `size` None means `auto` (content plus margin)."""

    key: str
    name: str
    number: int
    filesystem: str
    label: str
    type: str
    size: int | None
    margin: int
    content: str | None
    bootable: bool
    start: int | None
    options: tuple[str, ...]
    copy_of: str | None = None  # the partition whose image the disk stage writes here too

    @property
    def image(self) -> str | None:
        """File name of this partition's image (`root.ext4`); None for `filesystem: none`
        and for a copy (it holds another partition's image)."""
        return None if self.filesystem == "none" else f"{self.name}.{self.filesystem}"


@dataclass(frozen=True)
class Layout:
    """A validated partition layout."""

    table: str
    alignment: int
    partitions: tuple[Partition, ...]

    @property
    def root(self) -> Partition:
        """The partition that holds the root file system (`content: /`)."""
        return next(p for p in self.partitions if p.content == "/")

    @property
    def root_b(self) -> Partition | None:
        """The second root slot (the partition copying the root one), if the layout has one."""
        return next((p for p in self.partitions if p.copy_of is not None), None)

    def partition(self, name: str) -> Partition:
        """Return the partition called `name`."""
        return next(p for p in self.partitions if p.name == name)

    def to_json(self) -> Json:
        """Return the layout as plain JSON data (the config slice stages depend on)."""
        return {
            "table": self.table,
            "alignment": self.alignment,
            "partitions": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(p).items()
                 if k != "copy_of" or v is not None}
                for p in self.partitions
            ],
        }  # fmt: skip


@dataclass(frozen=True)
class Placement:
    """Where a partition lands on the disk, in bytes."""

    partition: Partition
    start: int
    size: int

    @property
    def end(self) -> int:
        """First byte after the partition."""
        return self.start + self.size


@dataclass(frozen=True)
class DiskPlan:
    """Every partition's place and the total size of the disk image."""

    table: str
    placements: tuple[Placement, ...]
    disk_size: int


def align_up(value: int, alignment: int) -> int:
    """Round `value` up to a multiple of `alignment`."""
    return -(-value // alignment) * alignment


def format_size(value: int) -> str:
    """Return a byte count the way people read it (`256 MiB`, `1.5 GiB`)."""
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if value >= factor:
            return f"{value / factor:.4g} {unit}"
    return f"{value} B"


def place(layout: Layout, sizes: Mapping[str, int], where: Where | None = None) -> DiskPlan:
    """Place partitions of the given sizes in order; ConfigError when fixed starts overlap."""
    cursor = align_up(MiB, layout.alignment)
    placements: list[Placement] = []
    for part in layout.partitions:
        size = sizes[part.name]
        start = part.start if part.start is not None else align_up(cursor, layout.alignment)
        if start < cursor:
            previous = placements[-1].partition.key if placements else "the partition table"
            raise ConfigError(
                f"partition {part.key} starts at {start} bytes, inside {previous} "
                f"(which ends at {cursor})",
                hint="move its start, shrink the partition before, or drop `start`",
                location=where("layout", "partitions", part.key, "start") if where else None,
                key=f"layout.partitions.{part.key}.start",
            )
        placements.append(Placement(part, start, size))
        cursor = start + size
        tail = GPT_TAIL if layout.table == "gpt" else 0
        if align_up(cursor + tail, layout.alignment) > TABLE_LIMIT[layout.table]:
            raise ConfigError(
                f"partition {part.key} ends at {format_size(cursor)}, beyond the "
                f"{format_size(TABLE_LIMIT[layout.table])} a {layout.table} table addresses",
                hint="shrink the partitions, or use `table: gpt` for disks beyond 2 TiB",
                location=where("layout", "partitions", part.key, "size") if where else None,
                key=f"layout.partitions.{part.key}.size",
            )
    tail = GPT_TAIL if layout.table == "gpt" else 0
    return DiskPlan(layout.table, tuple(placements), align_up(cursor + tail, layout.alignment))


def auto_size(needed: int, margin: int, alignment: int) -> int:
    """Size of an `auto` partition: what its content needs plus the margin, aligned up."""
    return align_up(needed + margin, alignment)


class HasLayout(Protocol):
    """What `layout_of` needs of a project (the Project has it; no import of it here)."""

    @property
    def layout(self) -> Layout | None: ...

    def where(self, *keys: str) -> Location: ...


def layout_of(project: HasLayout) -> Layout:
    """The project's layout; a ConfigError for a project without one (it makes no disk)."""
    if project.layout is None:
        raise ConfigError(
            "the project has no layout section",
            hint="add `layout: {partitions: {20_root: {size: auto}}}` (edibuild/image/layout.py)",
            location=project.where("layout"),
            key="layout",
        )
    return project.layout
