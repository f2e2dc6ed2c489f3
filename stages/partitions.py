"""Stage `partitions`: the rootfs tarball as one filesystem image per partition.

Input: `export`'s `rootfs` (rootfs.tar.zst). Outputs: one per layout partition that has
a filesystem, named after it: `{"root": "root.ext4", "boot": "boot.vfat", ...}`.
Config: the `layout` section, and the Mender artifact name (written into the root
filesystem as /etc/mender/artifact_info when the `mender` section is present).
Each partition with `content` gets that rootfs subtree (its mount point stays, empty, in
the root partition); UUIDs, hash seed and volume ids derive from the stage key, so the
same inputs give bit-identical images.
"""

from __future__ import annotations

import os
from pathlib import Path

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.errors import CommandFailed, ConfigError
from edibuild.image import fsimage
from edibuild.image.layout import Layout, Partition, auto_size, format_size, layout_of
from edibuild.image.mender import artifact_info
from edibuild.store import ramscratch

TOOLS = {
    "ext4": (Tool("mkfs.ext4", "e2fsprogs"), Tool("debugfs", "e2fsprogs"),
             Tool("dumpe2fs", "e2fsprogs")),
    "vfat": (Tool("mkfs.vfat", "dosfstools"), Tool("mcopy", "mtools"), Tool("mmd", "mtools")),
    "none": (),
}  # fmt: skip


def enabled(project: Project) -> bool:
    """Only projects with a layout make partition images (a dev container stops at export)."""
    return project.layout is not None


def outputs(project: Project) -> dict[str, str]:
    """Output name -> image file for every partition with a filesystem."""
    return {p.name: p.image for p in layout_of(project).partitions if p.image is not None}


def config(project: Project) -> Json:
    """The layout, and the Mender artifact name that goes into the root filesystem."""
    mender = project.mender
    return {
        "layout": layout_of(project).to_json(),
        "artifact_name": mender.artifact_name if mender is not None else None,
    }


def tools(project: Project) -> tuple[Tool, ...]:
    """tar and zstd to unpack, plus the mkfs tools of the filesystems the layout uses."""
    needed = [Tool("tar", "tar"), Tool("zstd", "zstd")]
    for part in layout_of(project).partitions:
        needed += [t for t in TOOLS[part.filesystem] if t not in needed]
    return tuple(needed)


def split_trees(
    ctx: StageContext, layout: Layout, rootfs: Path, base: Path
) -> dict[str, Path | None]:
    """Move each partition's content out of the unpacked rootfs (to `base/content-NAME`,
    on the rootfs's file system); return name -> its tree."""
    trees: dict[str, Path | None] = {p.name: None for p in layout.partitions}
    trees[layout.root.name] = rootfs
    others = [p for p in layout.partitions if p.content not in (None, "/")]
    # Deepest first, so /boot/efi leaves /boot before /boot moves out with its mount point.
    for part in sorted(others, key=lambda p: -str(p.content).count("/")):
        source = rootfs / str(part.content).lstrip("/")
        real = Path(os.path.realpath(source))
        if not source.is_dir() or source.is_symlink() or not real.is_relative_to(rootfs):
            raise ConfigError(
                f"the rootfs has no directory {part.content} for partition {part.key}",
                hint="create it in a playbook, or fix `content`",
                location=ctx.project.where("layout", "partitions", part.key, "content"),
                key=f"layout.partitions.{part.key}.content",
            )
        tree = base / f"content-{part.name}"
        st = source.lstat()
        source.rename(tree)
        source.mkdir()  # the mount point stays, with the owner and mode it had
        os.chown(source, st.st_uid, st.st_gid)
        source.chmod(st.st_mode & 0o7777)
        os.utime(source, ns=(st.st_mtime_ns, st.st_mtime_ns))
        trees[part.name] = tree
    return trees


def partition_size(ctx: StageContext, part: Partition, tree: Path | None) -> tuple[int, int]:
    """Return (image size, bytes the content needs); ConfigError if a fixed size is too small."""
    content = fsimage.usage(tree)
    if part.filesystem == "vfat":
        needed = fsimage.vfat_needed(content)
    else:
        needed = fsimage.ext4_needed(content)
    if part.size is None:
        return auto_size(needed, part.margin, layout_of(ctx.project).alignment), needed
    minimum = content.data if part.filesystem == "vfat" else 0
    if part.filesystem == "ext4":
        minimum = fsimage.ext4_minimum(content, part.size)
    if minimum > part.size:
        raise _too_small(ctx, part, minimum)
    return part.size, needed


def _too_small(ctx: StageContext, part: Partition, needed: int) -> ConfigError:
    return ConfigError(
        f"partition {part.key} is {format_size(part.size or 0)}, but its content "
        f"{part.content} needs at least {format_size(needed)}",
        hint="raise its size, or use `size: auto` with a margin",
        location=ctx.project.where("layout", "partitions", part.key, "size"),
        key=f"layout.partitions.{part.key}.size",
    )


def make_image(ctx: StageContext, part: Partition, tree: Path | None) -> Json:
    """Create one partition image; return what it holds (size, content, free space)."""
    with ctx.phase(f"{part.name} image"):
        return _make_image(ctx, part, tree)


def _make_image(ctx: StageContext, part: Partition, tree: Path | None) -> Json:
    size, needed = partition_size(ctx, part, tree)
    image = ctx.output(part.name)
    image.parent.mkdir(parents=True, exist_ok=True)
    epoch = ctx.source_date_epoch
    info: dict[str, Json] = {"image": image.name, "size": size, "content_estimate": needed}
    try:
        if part.filesystem == "ext4":
            params = fsimage.Ext4Params(
                label=part.label,
                uuid=fsimage.derive_uuid(ctx.key, f"{part.name}:uuid"),
                hash_seed=fsimage.derive_uuid(ctx.key, f"{part.name}:hash_seed"),
                epoch=epoch,
                options=part.options,
            )
            fsimage.make_ext4(image, size, tree, params, ctx.log)
            info.update(uuid=params.uuid, free=fsimage.ext4_free(image))
        else:
            volume_id = fsimage.derive_hex(ctx.key, f"{part.name}:volume_id")
            skipped = fsimage.make_vfat(image, size, tree, part.label, volume_id, epoch, ctx.log)
            info.update(volume_id=volume_id, skipped=skipped)
    except CommandFailed as exc:
        if part.size is not None and ("space" in str(exc) or "full" in str(exc)):
            raise _too_small(ctx, part, needed) from exc
        raise
    return info


def add_file(root: Path, relative: str, text: str, epoch: int) -> None:
    """Write a file into the tree with mtime `epoch`, keeping the parents' mtimes unchanged."""
    path = root / relative
    parents = [root / p for p in Path(relative).parents]
    before = {p: p.stat().st_mtime_ns for p in parents if p.exists()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    for parent in [path, *parents]:
        mtime = before.get(parent, epoch * 1_000_000_000)
        os.utime(parent, ns=(mtime, mtime))


def build(ctx: StageContext) -> Json:
    """Unpack the rootfs (in memory when it fits), split it by partition and make every
    partition image."""
    layout = layout_of(ctx.project)
    tarball = ctx.input("export", "rootfs")
    need = ramscratch.unpacked_size(tarball)
    with ramscratch.tree_dir(ctx.scratch("trees"), need) as base:
        rootfs = base / "rootfs"
        with ctx.phase("unpack"):
            fsimage.unpack(tarball, rootfs, ctx.log)
        mender = ctx.project.mender
        if mender is not None:
            add_file(
                rootfs, "etc/mender/artifact_info", artifact_info(mender), ctx.source_date_epoch
            )
        trees = split_trees(ctx, layout, rootfs, base)
        return {
            p.name: make_image(ctx, p, trees[p.name])
            for p in layout.partitions
            if p.image is not None
        }


STAGE = Stage(
    name="partitions",
    doc="Make one file system image per partition of the layout (ext4, vfat)",
    upstream=("export",),
    enabled=enabled,
    outputs=outputs,
    config=config,
    build=build,
    tools=tools,
    needs_root=True,
    image_output=True,
)
