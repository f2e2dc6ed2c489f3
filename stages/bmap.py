"""Stage `bmap`: the block map of the disk image, for fast and verified flashing.

Input: `disk`'s image. Output: `bmap` = `<project>.bmap`. Config: none (it depends on the
image's bytes only). Users flash with `bmaptool copy <project>.img /dev/mmcblk0`, which
writes only the mapped blocks and checks their digests.
"""

from __future__ import annotations

from edibuild.project import Json
from edibuild.stage import Stage, StageContext, Tool


def build(ctx: StageContext) -> Json:
    """Run bmaptool create on the disk image."""
    image = ctx.input("disk", "image")
    bmap = ctx.output("bmap")
    bmap.parent.mkdir(parents=True, exist_ok=True)
    ctx.run(["bmaptool", "create", "-o", bmap, image], env=ctx.env)
    return {"image_size": image.stat().st_size}


STAGE = Stage(
    name="bmap",
    doc="Make the block map of the disk image (bmaptool copy flashes it fast)",
    upstream=("disk",),
    outputs=lambda project: {"bmap": f"{project.name}.bmap"},
    config=lambda project: {},
    build=build,
    tools=lambda project: (Tool("bmaptool", "bmap-tools"),),
    needs_root=False,
    image_output=True,
)
