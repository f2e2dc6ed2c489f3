"""The disk layout (project section `layout`): parsing, validation and partition arithmetic.

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

Sizes are whole numbers of bytes, computed exactly (`1.5GiB` is 1610612736, no float
rounding), at most MAX_SIZE; a partition must end within what its table addresses
(MBR: 2 TiB with 512-byte sectors; GPT: TABLE_LIMIT["gpt"]). `bootable` is true or
false. Labels are plain text: no control characters, and none of the characters the
file system or the sfdisk script cannot hold (LABEL_FORBIDDEN); lengths are counted
the way the file system stores them (ext4: UTF-8 bytes; vfat: bytes; GPT: UTF-16 units).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from edibuild.config import names, values
from edibuild.config.reader import Reader, Where
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
LAYOUT_KEYS = ("table", "alignment", "partitions")
PARTITION_KEYS = (
    "filesystem", "label", "type", "size", "margin", "content", "bootable", "start", "options",
)  # fmt: skip
UNITS = {
    "": 1, "B": 1, "K": KiB, "KiB": KiB, "M": MiB, "MiB": MiB, "G": GiB, "GiB": GiB,
    "T": 1024 * GiB, "TiB": 1024 * GiB,
}  # fmt: skip
NODE_KEY = names.PARTITION_KEY
SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


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

    @property
    def image(self) -> str | None:
        """File name of this partition's image (`root.ext4`), None for `filesystem: none`."""
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

    def partition(self, name: str) -> Partition:
        """Return the partition called `name`."""
        return next(p for p in self.partitions if p.name == name)

    def to_json(self) -> Json:
        """Return the layout as plain JSON data (the config slice stages depend on)."""
        return {
            "table": self.table,
            "alignment": self.alignment,
            "partitions": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(p).items()}
                for p in self.partitions
            ],
        }


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


def parse_size(value: object) -> int:
    """Parse `256MiB`, `4M`, `1.5GiB` or a plain byte count exactly; ValueError if malformed."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        number, unit = Fraction(value), ""
    else:
        match = SIZE_RE.fullmatch(value)
        if match is None or match.group(2) not in UNITS:
            raise ValueError(f"{value!r} is not a size")
        number, unit = Fraction(match.group(1)), match.group(2)
    size = number * UNITS[unit]
    if size.denominator != 1 or size < 0:
        raise ValueError(f"{value!r} is not a whole number of bytes")
    if size > MAX_SIZE:
        raise ValueError(f"{value!r} is larger than {format_size(MAX_SIZE)}")
    return int(size)


class _Reader(Reader):
    """A Reader of the layout section that also reads sizes (`256MiB`, `auto`, bytes)."""

    def sub(self, field: str) -> _Reader:
        """A reader of the mapping under `field`."""
        return _Reader(self.where_of, (*self.path, field), self.data.get(field))

    def size(self, field: str, default: object, *, multiple: int = 1) -> int | None:
        """Read a size in bytes (None when absent and `default` is None)."""
        value = self.data.get(field, default)
        if value is None:
            return None
        try:
            size = parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), hint="write sizes like 256MiB, 4M, 1GiB or bytes", field=field)
        if size % multiple:
            self.fail(f"{value!r} is not a multiple of {format_size(multiple)}", field=field)
        return size


def parse_layout(reader: Reader | None) -> Layout | None:
    """Read the `layout` section (None: the project makes no disk image); ConfigError else."""
    if reader is None:
        return None
    where = reader.where_of
    top = _Reader(where, reader.path, reader.data)
    top.known(LAYOUT_KEYS)
    table = top.choice("table", TABLES, "msdos")
    alignment = top.size("alignment", DEFAULT_ALIGNMENT, multiple=4 * KiB)
    assert alignment is not None
    if alignment == 0:
        top.fail("alignment must be positive", hint="4MiB suits SD cards", field="alignment")
    nodes = top.data.get("partitions")
    if not isinstance(nodes, Mapping) or not nodes:
        top.fail(
            "needs at least one partition",
            hint="add partitions: {20_root: {size: auto}}",
            field="partitions",
        )
    assert isinstance(nodes, Mapping)
    ordered = sorted(nodes, key=lambda k: (_order(where, str(k)), str(k)))
    parts = tuple(
        _partition(where, str(key), nodes[key], number, alignment)
        for number, key in enumerate(ordered, start=1)
    )
    layout = Layout(table, alignment, parts)
    _check_whole(where, layout)
    return layout


def _order(where: Where, key: str) -> int:
    match = NODE_KEY.fullmatch(key)
    if match is None:
        raise ConfigError(
            f"partition key {key!r} is not of the form NN_name",
            hint="name partitions like 10_boot, 20_root (the number orders them)",
            location=where("layout", "partitions", key),
            key=f"layout.partitions.{key}",
        )
    return int(match.group(1))


def _partition(where: Where, key: str, data: Json, number: int, align: int) -> Partition:
    reader = _Reader(where, ("layout", "partitions", key), data)
    reader.known(PARTITION_KEYS)
    name = NODE_KEY.fullmatch(key).group(2)  # type: ignore[union-attr]
    filesystem = reader.choice("filesystem", FILESYSTEMS, "ext4")
    ptype = reader.choice("type", tuple(PART_TYPES), DEFAULT_TYPE[filesystem])
    label = _label(reader, name, filesystem)
    auto = reader.data.get("size") == "auto"
    size = None if auto else reader.size("size", None, multiple=4 * KiB)
    if size is None and not auto:
        reader.fail("needs a size", hint="give a size like 256MiB, or `auto`", field="size")
    content = _content(reader, name)
    if filesystem == "none" and (auto or content is not None):
        reader.fail(
            "a partition without filesystem cannot have content or an auto size",
            hint="give it a fixed size, or a filesystem",
            field="filesystem",
        )
    if size == 0:
        reader.fail("size must be positive", hint=None, field="size")
    options = reader.data.get("options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        reader.fail(
            "options must be a list of strings", hint="options: [-F, '32']", field="options"
        )
    return Partition(
        key=key,
        name=name,
        number=number,
        filesystem=filesystem,
        label=label,
        type=ptype,
        size=size,
        margin=reader.size("margin", 0) or 0,
        content=content,
        bootable=values.boolean(
            reader.data.get("bootable", False),
            key=f"layout.partitions.{key}.bootable",
            location=where("layout", "partitions", key, "bootable"),
        ),
        start=reader.size("start", None, multiple=SECTOR),
        options=tuple(options),
    )


def _label(reader: _Reader, name: str, filesystem: str) -> str:
    """The partition's label: plain text the file system and the GPT name can hold."""
    keys = (*reader.path, "label")
    label = values.text(
        reader.data.get("label", name),
        key=".".join(keys),
        location=reader.where_of(*keys),
        what=f"a partition label for {filesystem}",
        forbidden=LABEL_FORBIDDEN[filesystem],
        hint=f"use letters, digits, - and _ (not {LABEL_FORBIDDEN[filesystem]})",
    )
    limit = LABEL_MAX[filesystem]
    stored = len(label.encode("utf-16-le")) // 2 if filesystem == "none" else len(label.encode())
    gpt = len(label.encode("utf-16-le")) // 2
    if stored > limit or gpt > GPT_NAME_MAX:
        reader.fail(
            f"label {label!r} must have 1 to {limit} characters for {filesystem}",
            hint="shorten it (counted as stored: an accented letter takes two bytes)",
            field="label",
        )
    return label


def _content(reader: _Reader, name: str) -> str | None:
    value = reader.data.get("content", "/" if name == "root" else None)
    if value is None:
        return None
    text = str(value)
    if not text.startswith("/") or "/../" in f"{text}/" or "/./" in f"{text}/":
        reader.fail(
            f"content {text!r} must be an absolute path inside the rootfs",
            hint="for example /boot/firmware",
            field="content",
        )
    return "/" + text.strip("/") if text != "/" else "/"


def _check_whole(where: Where, layout: Layout) -> None:
    def fail(message: str, hint: str, *keys: str) -> None:
        raise ConfigError(
            message,
            hint=hint,
            location=where("layout", *keys),
            key=".".join(("layout", *keys)),
        )

    if layout.table == "msdos" and len(layout.partitions) > MBR_MAX_PARTITIONS:
        fail(
            f"an msdos table holds at most {MBR_MAX_PARTITIONS} partitions, "
            f"this layout has {len(layout.partitions)}",
            "use `table: gpt`",
            "partitions",
        )
    roots = [p for p in layout.partitions if p.content == "/"]
    if len(roots) != 1:
        fail(
            f"exactly one partition must hold the root file system, found {len(roots)}",
            "name it NN_root or give it `content: /`",
            "partitions",
        )
    if roots[0].filesystem != "ext4":
        fail("the root partition must be ext4", "use filesystem: ext4", "partitions", roots[0].key)
    seen: dict[tuple[str, str], str] = {}
    for part in layout.partitions:
        for kind, value in (("label", part.label), ("content", part.content)):
            if value is None:
                continue
            if (kind, value) in seen:
                fail(
                    f"{kind} {value!r} is used by both {seen[(kind, value)]} and {part.key}",
                    f"give every partition its own {kind}",
                    "partitions",
                    part.key,
                    kind,
                )
            seen[(kind, value)] = part.key
    # Catch overlaps that no content can fix now; auto sizes are checked again at build.
    place(layout, {p.name: p.size or layout.alignment for p in layout.partitions}, where)


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
