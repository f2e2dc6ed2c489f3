"""Stage `bmap`: the block map of the disk image, for fast and verified flashing.

Input: `disk`'s image. Output: `bmap` = `<project>.bmap`. Config: none (it depends on the
image's bytes only). Users flash with `bmaptool copy <project>.img /dev/mmcblk0`, which
writes only the mapped blocks and checks their digests.
"""

from __future__ import annotations

from collections.abc import Mapping

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.store import ramscratch


def outputs(project: Project) -> Mapping[str, str]:
    """One output: the block map, named after the project."""
    return {"bmap": f"{project.name}.bmap"}


def config(project: Project) -> Json:
    """Nothing: the block map depends on the image's bytes only."""
    return {}


def tools(project: Project) -> tuple[Tool, ...]:
    """bmaptool makes it, from cp's sparse copy."""
    return (Tool("bmaptool", "bmap-tools"), Tool("cp", "coreutils"))


def build(ctx: StageContext) -> Json:
    """Run bmaptool create on a copy of the disk image whose holes are its zero blocks.

    bmaptool maps the blocks a file has on disk, and where an image has holes depends on
    the file systems it was copied through (a tmpfs scratch space, a cache on another
    disk): mapping a copy that makes every zero block a hole gives a block map that
    depends on the image's bytes only, like the cache key it is stored under. The copy
    goes to memory when it fits (its data only: a third of the image), since writing it
    to the disk beside the image took 3 s of the stage's 4.7.
    """
    image = ctx.input("disk", "image")
    data = image.stat().st_blocks * 512
    with ramscratch.tree_dir(ctx.scratch("canonical"), data) as folder:
        canonical = folder / image.name
        ctx.run(["cp", "--sparse=always", image, canonical])
        bmap = ctx.output("bmap")
        bmap.parent.mkdir(parents=True, exist_ok=True)
        ctx.run(["bmaptool", "create", "-o", bmap, canonical], env=ctx.env)
    return {"image_size": image.stat().st_size}


STAGE = Stage(
    name="bmap",
    doc="Make the block map of the disk image (bmaptool copy flashes it fast)",
    upstream=("disk",),
    outputs=outputs,
    config=config,
    build=build,
    tools=tools,
    needs_root=False,
    image_output=True,
)
