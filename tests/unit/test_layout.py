"""Layout parsing, validation and arithmetic (offsets, alignment, sizes, disk size)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from edibuild.config.project import Bootstrap, Project
from edibuild.config.sections import with_settings
from edibuild.data import Json
from edibuild.errors import ConfigError, Location
from edibuild.image.layout import (
    GPT_TAIL,
    Layout,
    MiB,
    align_up,
    auto_size,
    format_size,
    layout_of,
    place,
)
from edibuild.image.layout_parse import parse_size

PI = {
    "table": "msdos",
    "alignment": "4MiB",
    "partitions": {
        "10_boot": {"label": "BOOT", "filesystem": "vfat", "size": "256MiB",
                    "content": "/boot/firmware", "bootable": True},
        "20_root": {"label": "rootfs", "size": "auto", "margin": "300MiB"},
        "30_data": {"label": "data", "size": "64MiB"},
    },
}  # fmt: skip


def project(layout: Json) -> Project:
    """A project whose layout keys are located at line numbers (like the loader does)."""
    locations = {("layout",): Location(Path("p.yml"), 3)}
    if isinstance(layout, Mapping):
        for n, key in enumerate(layout.get("partitions") or {}, start=10):
            locations[("layout", "partitions", key)] = Location(Path("p.yml"), n)
    return Project(
        name="p", file=Path("p.yml"), description="", parameters={},
        bootstrap=Bootstrap("amd64", "bookworm", "http://deb.debian.org/debian"),
        lxd_profiles=(), playbooks=(), sections={"layout": layout}, locations=locations,
    )  # fmt: skip


def parse_layout(proj: Project) -> Layout:
    """The project's layout, parsed as the loader parses it."""
    layout = with_settings(proj).layout
    assert layout is not None
    return layout


def with_parts(**parts: Json) -> dict[str, Json]:
    """A layout with the given partitions (plus defaults)."""
    return {"partitions": parts}


@pytest.mark.parametrize(
    ("text", "size"),
    [("256MiB", 256 * MiB), ("4M", 4 * MiB), ("1.5GiB", 1536 * MiB), (512, 512),
     ("2048", 2048), ("8KiB", 8192), (" 1 G ", 1024 * MiB), ("0.5KiB", 512), ("1.25K", 1280),
     ("2.50M", 2560 * 1024), (0, 0)],
)  # fmt: skip
def test_parse_size_units(text: object, size: int) -> None:
    """Binary units, with or without `i`, plain byte counts."""
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["12 parsecs", "MiB", "-4M", True, "0.3B", "1MB", -1, "0.001K", "1.5"]
)
def test_parse_size_rejects_garbage(text: object) -> None:
    """Unknown units, fractions of bytes, booleans and signs are no sizes."""
    with pytest.raises(ValueError):
        parse_size(text)


def test_align_and_format() -> None:
    """Rounding up to the alignment, and sizes written for people."""
    assert align_up(1, 4 * MiB) == 4 * MiB
    assert align_up(4 * MiB, 4 * MiB) == 4 * MiB
    assert align_up(0, 4 * MiB) == 0
    assert auto_size(900 * MiB + 1, 300 * MiB, 4 * MiB) == 1204 * MiB
    assert format_size(256 * MiB) == "256 MiB"
    assert format_size(1536 * MiB) == "1.5 GiB"
    assert format_size(100) == "100 B"


def test_pi_layout_parses_in_order() -> None:
    """The ordered NN_name nodes, defaults, and the root found by its name."""
    layout = parse_layout(project(PI))
    assert layout.table == "msdos" and layout.alignment == 4 * MiB
    names = [p.name for p in layout.partitions]
    assert names == ["boot", "root", "data"]
    assert [p.number for p in layout.partitions] == [1, 2, 3]
    assert layout.root.name == "root" and layout.root.content == "/"
    boot = layout.partition("boot")
    assert (boot.type, boot.bootable, boot.size, boot.image) == ("vfat", True, 256 * MiB,
                                                                 "boot.vfat")  # fmt: skip
    assert layout.root.size is None and layout.root.margin == 300 * MiB
    assert layout.partition("data").content is None  # empty
    assert layout.partition("data").image == "data.ext4"


def test_numeric_order_not_text_order() -> None:
    """9_a comes before 10_b."""
    layout = parse_layout(project(with_parts(**{"10_root": {"size": "auto"},
                                               "9_boot": {"size": "8MiB"}})))  # fmt: skip
    assert [p.name for p in layout.partitions] == ["boot", "root"]


def test_placement_offsets_and_disk_size_msdos() -> None:
    """Partitions follow each other on alignment boundaries from the first aligned MiB."""
    layout = parse_layout(project(PI))
    plan = place(layout, {"boot": 256 * MiB, "root": 1204 * MiB, "data": 64 * MiB})
    starts = [(p.partition.name, p.start // MiB, p.size // MiB) for p in plan.placements]
    assert starts == [("boot", 4, 256), ("root", 260, 1204), ("data", 1464, 64)]
    assert plan.disk_size == 1528 * MiB


def test_gpt_leaves_room_for_the_backup_table() -> None:
    """GPT disks grow by the backup table, rounded to the alignment."""
    layout = parse_layout(project({**PI, "table": "gpt"}))
    plan = place(layout, {"boot": 256 * MiB, "root": 1204 * MiB, "data": 64 * MiB})
    assert plan.disk_size == 1532 * MiB
    assert plan.disk_size - plan.placements[-1].end >= GPT_TAIL


def test_unaligned_sizes_push_the_next_start_to_the_boundary() -> None:
    """An image size off the alignment leaves a gap up to the next boundary."""
    layout = parse_layout(project({"alignment": "1MiB", "partitions": {
        "10_boot": {"size": "4MiB"}, "20_root": {"size": "auto"}}}))  # fmt: skip
    plan = place(layout, {"boot": 3 * MiB + 4096, "root": 10 * MiB})
    assert [p.start // MiB for p in plan.placements] == [1, 5]
    assert plan.disk_size == 15 * MiB


def test_fixed_start_is_honoured() -> None:
    """An explicit start leaves the space before it free."""
    layout = parse_layout(project(with_parts(**{"10_boot": {"size": "8MiB", "start": "64MiB"},
                                               "20_root": {"size": "auto"}})))  # fmt: skip
    plan = place(layout, {"boot": 8 * MiB, "root": 16 * MiB})
    assert [p.start // MiB for p in plan.placements] == [64, 72]


def reject(layout: Json, pattern: str) -> ConfigError:
    """Assert the layout is refused with a message matching `pattern`; return the error."""
    with pytest.raises(ConfigError, match=pattern) as info:
        parse_layout(project(layout))
    return info.value


def test_overlapping_fixed_starts_are_refused() -> None:
    """A start inside the previous partition names both."""
    error = reject(with_parts(**{"10_boot": {"size": "64MiB"},
                                 "20_root": {"size": "auto", "start": "32MiB"}}),
                   r"20_root starts at .* inside 10_boot")  # fmt: skip
    assert error.key == "layout.partitions.20_root.start"


def test_duplicate_labels_are_refused() -> None:
    """Two partitions with one label would make LABEL= ambiguous."""
    error = reject(with_parts(**{"10_a": {"size": "8MiB", "label": "x"},
                                 "20_root": {"size": "auto", "label": "x"}}),
                   r"label 'x' is used by both 10_a and 20_root")  # fmt: skip
    assert error.location == Location(Path("p.yml"), 11)


@pytest.mark.parametrize(
    ("layout", "pattern"),
    [
        ({**PI, "table": "apm"}, r"unknown table 'apm'"),
        (with_parts(**{"20_root": {"size": "auto", "filesystem": "btrfs"}}),
         r"unknown filesystem 'btrfs'"),
        (with_parts(**{"20_root": {"size": "auto", "type": "ntfs"}}), r"unknown type 'ntfs'"),
        (with_parts(**{"20_root": {"size": "auto", "colour": 1}}), r"unknown key 'colour'"),
        (with_parts(**{"root": {"size": "auto"}}), r"not of the form NN_name"),
        (with_parts(**{"20_root": {}}), r"needs a size"),
        (with_parts(**{"20_root": {"size": "lots"}}), r"is not a size"),
        (with_parts(**{"20_root": {"size": "1000B"}}), r"not a multiple of 4 KiB"),
        (with_parts(**{"10_data": {"size": "8MiB"}}), r"exactly one partition .* found 0"),
        (with_parts(**{"20_root": {"size": "auto", "filesystem": "vfat"}}),
         r"root partition must be ext4"),
        (with_parts(**{"20_root": {"size": "auto", "filesystem": "vfat", "label": "x" * 12}}),
         r"1 to 11 characters for vfat"),
        (with_parts(**{"10_b": {"size": "8MiB", "content": "/boot"},
                       "20_c": {"size": "8MiB", "content": "/boot/"},
                       "30_root": {"size": "auto"}}), r"content '/boot' is used by both"),
        (with_parts(**{"10_b": {"size": "8MiB", "content": "boot"}, "20_root": {"size": "auto"}}),
         r"must be an absolute path"),
        (with_parts(**{"10_s": {"size": "auto", "filesystem": "none"},
                       "20_root": {"size": "auto"}}), r"without filesystem cannot"),
        (with_parts(**{f"{n}_p{n}": {"size": "8MiB"} for n in range(1, 5)},
                    **{"50_root": {"size": "auto"}}), r"at most 4 partitions"),
        ({"alignment": "3KiB", "partitions": {"20_root": {"size": "auto"}}},
         r"not a multiple of 4 KiB"),
        ({"partitions": {}}, r"needs at least one partition"),
        ("msdos", r"must be a mapping"),
    ],
)  # fmt: skip
def test_bad_layouts_are_refused(layout: Json, pattern: str) -> None:
    """Each mistake gets its own clear message."""
    reject(layout, pattern)


def test_missing_layout_has_a_hint() -> None:
    """No layout section: the message says how to write one."""
    proj = project(None)
    with pytest.raises(ConfigError, match="no layout section") as info:
        layout_of(proj)
    assert info.value.hint and "20_root" in info.value.hint


def test_gpt_allows_many_partitions_and_to_json_is_plain() -> None:
    """GPT lifts the four-partition limit; to_json gives JSON data for the config slice."""
    parts = {f"{n}_p{n}": {"size": "8MiB"} for n in range(1, 7)}
    layout = parse_layout(project({"table": "gpt", "partitions": {**parts, "90_root":
                                                                  {"size": "auto"}}}))  # fmt: skip
    assert len(layout.partitions) == 7
    data = layout.to_json()
    assert data["partitions"][0]["options"] == [] and data["table"] == "gpt"
