"""Reading and checking the `layout` section into a Layout (its keys: edibuild/image/layout.py)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import NoReturn

from edibuild.config import names, values
from edibuild.config.reader import Reader, Where
from edibuild.config.suggest import did_you_mean
from edibuild.data import Json
from edibuild.errors import ConfigError
from edibuild.image.layout import (
    DEFAULT_ALIGNMENT,
    DEFAULT_TYPE,
    FILESYSTEMS,
    GPT_NAME_MAX,
    LABEL_FORBIDDEN,
    LABEL_MAX,
    MAX_SIZE,
    MBR_MAX_PARTITIONS,
    PART_TYPES,
    SECTOR,
    TABLES,
    GiB,
    KiB,
    Layout,
    MiB,
    Partition,
    format_size,
    place,
)

LAYOUT_KEYS = ("table", "alignment", "partitions")
PARTITION_KEYS = (
    "filesystem", "label", "type", "size", "margin", "content", "bootable", "start", "options",
    "copy_of",
)  # fmt: skip
COPY_KEYS = ("copy_of", "label", "start")
UNITS = {
    "": 1, "B": 1, "K": KiB, "KiB": KiB, "M": MiB, "MiB": MiB, "G": GiB, "GiB": GiB,
    "T": 1024 * GiB, "TiB": 1024 * GiB,
}  # fmt: skip
NODE_KEY = names.PARTITION_KEY
SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_size(value: object) -> int:
    """Parse `256MiB`, `4M`, `1.5GiB` or a plain byte count exactly; ValueError if malformed."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        scaled, tenths = value, 1
    else:
        match = SIZE_RE.fullmatch(value)
        if match is None or match.group(2) not in UNITS:
            raise ValueError(f"{value!r} is not a size")
        whole, _, decimals = match.group(1).partition(".")
        # Integers only (exact, and no fractions module at every doit start).
        scaled, tenths = int(whole + decimals) * UNITS[match.group(2)], 10 ** len(decimals)
    if scaled % tenths or scaled < 0:
        raise ValueError(f"{value!r} is not a whole number of bytes")
    size = scaled // tenths
    if size > MAX_SIZE:
        raise ValueError(f"{value!r} is larger than {format_size(MAX_SIZE)}")
    return size


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
    layout = _with_copies(where, Layout(table, alignment, parts))
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
    if reader.has("copy_of"):
        return _copy(reader, key, name, number)
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


def _copy(reader: _Reader, key: str, name: str, number: int) -> Partition:
    """A partition that copies another one (size and type are filled in by _with_copies)."""
    source = reader.text("copy_of", what="a partition name")
    for field in reader.data:
        if field not in COPY_KEYS:
            reader.fail(
                f"a copy takes its {field} from {source}: remove `{field}`",
                hint=f"a copy takes only {', '.join(COPY_KEYS)}",
                field=field,
            )
    return Partition(
        key=key, name=name, number=number, filesystem="none",
        label=_label(reader, name, "none"), type="linux", size=None, margin=0, content=None,
        bootable=False, start=reader.size("start", None, multiple=SECTOR), options=(),
        copy_of=source,
    )  # fmt: skip


def _with_copies(where: Where, layout: Layout) -> Layout:
    """Check the copies (a second root slot) and give them their source's size and type."""
    copies = [p for p in layout.partitions if p.copy_of is not None]
    if not copies:
        return layout
    root = _copied_root(where, layout, copies)
    filled = tuple(
        dataclasses.replace(p, size=root.size, type=root.type) if p.copy_of else p
        for p in layout.partitions
    )
    return dataclasses.replace(layout, partitions=filled)


def _copied_root(where: Where, layout: Layout, copies: list[Partition]) -> Partition:
    """Check that `copies` are one second slot of a fixed-size root on GPT; return the root."""
    roots = [p for p in layout.partitions if p.content == "/"]
    _check_sources(where, layout, copies, roots)
    if len(copies) > 1:
        _copy_error(
            where,
            copies[1],
            f"only one partition can copy the root partition ({copies[0].key} does already)",
            "A/B updates use two root slots: remove this one",
        )
    root = roots[0]
    if layout.table != "gpt":
        _copy_error(
            where,
            copies[0],
            "a second root slot needs `table: gpt`",
            "the boot loader and the Mender client tell the slots apart by their GPT "
            "partition numbers and names",
            "copy_of",
        )
    if root.size is None:
        _copy_error(
            where,
            root,
            f"the root partition {root.key} has a copy ({copies[0].key}), so it needs a "
            "fixed size, not `auto`",
            "every later version's root image must fit the partitions of the devices "
            "already in the field: give a size like 2GiB, with room to grow",
            "size",
        )
    return root


def _check_sources(
    where: Where, layout: Layout, copies: list[Partition], roots: list[Partition]
) -> None:
    """Check that every copy names the root partition as its source."""
    names_ = [p.name for p in layout.partitions if p.copy_of is None]
    for part in copies:
        if part.copy_of not in names_:
            _copy_error(
                where,
                part,
                f"copy_of {part.copy_of!r} names no partition of the layout",
                did_you_mean(str(part.copy_of), names_),
            )
        if not roots or part.copy_of != roots[0].name:
            _copy_error(
                where,
                part,
                f"only the root partition can be copied, not {part.copy_of!r}",
                "a copy is the second root slot of A/B updates: copy_of: "
                + (roots[0].name if roots else "root"),
            )


def _copy_error(
    where: Where, part: Partition, message: str, hint: str, field: str = "copy_of"
) -> NoReturn:
    """Raise the ConfigError of a bad copy setup, located at `field` of `part`."""
    raise ConfigError(
        message, hint=hint, location=where("layout", "partitions", part.key, field),
        key=f"layout.partitions.{part.key}.{field}",
    )  # fmt: skip


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
