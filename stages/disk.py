"""Stage `disk`: the partition images at their offsets in one sparse, partitioned disk image.

Input: every image of `partitions`. Output: `image` = `<project>.img`.
Config: the `layout` section (table, alignment, order, types, labels, flags).
The partition table is written by `sfdisk` on the file (no loop device) with a disk
identifier and GPT partition UUIDs derived from the stage key; GPT partition names are
the labels. The images are copied in with their holes kept, so the result is as sparse
as its partitions; a copy of the root partition (the second root slot of an A/B layout)
gets the root image too, so a fresh device boots from either slot.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edibuild.config.project import Project
from edibuild.config.values import bad_character
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.errors import StageFailed
from edibuild.image.layout import (
    PART_TYPES,
    SECTOR,
    DiskPlan,
    Layout,
    Partition,
    layout_of,
    place,
)
from edibuild.lazy import lazy_import
from edibuild.store.fsutil import data_extents

if TYPE_CHECKING:
    from edibuild.image import fsimage
else:  # only a build needs it, not planning
    fsimage = lazy_import("edibuild.image.fsimage")

CHUNK = 1024 * 1024
ZEROS = bytes(CHUNK)


def sfdisk_script(plan: DiskPlan, key: str) -> str:
    """Return the sfdisk script of a plan: fixed disk id, sectors, types, flags, names."""
    gpt = plan.table == "gpt"
    label_id = fsimage.derive_uuid(key, "disk") if gpt else "0x" + fsimage.derive_hex(key, "disk")
    lines = [f"label: {'gpt' if gpt else 'dos'}", f"label-id: {label_id}", "unit: sectors", ""]
    for placed in plan.placements:
        part = placed.partition
        mbr_type, gpt_type = PART_TYPES[part.type]
        fields = [f"start={placed.start // SECTOR}", f"size={placed.size // SECTOR}"]
        if gpt:
            fields += [f"type={gpt_type}", f"uuid={fsimage.derive_uuid(key, 'part:' + part.name)}",
                       f'name="{_script_text(part.label)}"']  # fmt: skip
            if part.bootable:
                fields.append("attrs=LegacyBIOSBootable")
        else:
            fields.append(f"type={mbr_type}")
            if part.bootable:
                fields.append("bootable")
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


def _script_text(text: str) -> str:
    """A quoted value of the sfdisk script: refused if it could end the quote or the line
    (the layout section refuses such labels already; this is the check where it is written)."""
    if bad_character(text) is not None or '"' in text or "\\" in text:
        raise StageFailed(f"the partition label {text!r} cannot be written to sfdisk's script")
    return text


def copy_sparse(source: Path, target: Path, offset: int) -> int:
    """Copy `source` into `target` at `offset`, keeping holes; return the bytes written.

    Each data extent is copied by the kernel (copy_file_range: no pass through Python,
    2-3x faster); where it cannot (another file system, an old kernel), chunk by chunk,
    leaving zero chunks out.
    """
    written = 0
    with source.open("rb") as src, target.open("r+b") as dst:
        for start, end in data_extents(src.fileno()):
            written += _copy_extent(src.fileno(), dst.fileno(), start, end, offset)
    return written


def _copy_extent(src: int, dst: int, pos: int, end: int, offset: int) -> int:
    """Copy bytes [pos, end) of `src` to `dst` at `offset + pos`; return the bytes written."""
    written = 0
    with contextlib.suppress(OSError):  # EXDEV, ENOSYS, EINVAL: copy through Python
        while pos < end:
            count = os.copy_file_range(src, dst, end - pos, pos, offset + pos)
            if count <= 0:
                break
            pos += count
            written += count
    while pos < end:
        chunk = os.pread(src, min(CHUNK, end - pos), pos)
        if not chunk:
            raise StageFailed(f"the partition image ended early, at byte {pos} of {end}")
        if chunk != ZEROS[: len(chunk)]:
            os.pwrite(dst, chunk, offset + pos)
            written += len(chunk)
        pos += len(chunk)
    return written


def image_of(ctx: StageContext, part: Partition) -> Path | None:
    """The image written into a partition: its own, its source's (a copy), or none."""
    if part.copy_of is not None:
        return ctx.input("partitions", part.copy_of)
    return ctx.input("partitions", part.name) if part.image is not None else None


def plan_disk(ctx: StageContext, layout: Layout) -> DiskPlan:
    """Place the partitions with the sizes of their images (or their fixed sizes)."""
    sizes = {
        p.name: ctx.input("partitions", p.name).stat().st_size if p.image else p.size or 0
        for p in layout.partitions
    }
    return place(layout, sizes, ctx.project.where)


def build(ctx: StageContext) -> Json:
    """Write the partition table, then each partition image at its offset."""
    layout = layout_of(ctx.project)
    plan = plan_disk(ctx, layout)
    image = ctx.output("image")
    image.parent.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as f:
        f.truncate(plan.disk_size)
    script = sfdisk_script(plan, ctx.key)
    ctx.run(["sfdisk", "--no-reread", "--no-tell-kernel", image], input=script.encode())
    written = 0
    for placed in plan.placements:
        source = image_of(ctx, placed.partition)
        if source is not None:
            if source.stat().st_size != placed.size:
                raise StageFailed(f"{source.name} is {source.stat().st_size} bytes, but "
                                  f"partition {placed.partition.key} is {placed.size}")  # fmt: skip
            written += copy_sparse(source, image, placed.start)
    return {
        "table": plan.table,
        "disk_size": plan.disk_size,
        "data_bytes": written,
        "partitions": [
            {"name": p.partition.name, "number": p.partition.number, "start": p.start,
             "size": p.size, "label": p.partition.label}
            for p in plan.placements
        ],
    }  # fmt: skip


def outputs(project: Project) -> Mapping[str, str]:
    """One output: the disk image, named after the project."""
    return {"image": f"{project.name}.img"}


def tools(project: Project) -> tuple[Tool, ...]:
    """sfdisk writes the partition table."""
    return (Tool("sfdisk", "fdisk"),)


def config(project: Project) -> Json:
    """The layout: table, alignment, order, types, labels and flags."""
    return {"layout": layout_of(project).to_json()}


STAGE = Stage(
    name="disk",
    doc="Assemble the partitioned, sparse disk image (what users flash)",
    upstream=("partitions",),
    outputs=outputs,
    config=config,
    build=build,
    tools=tools,
    needs_root=False,
    image_output=True,
)
