"""Stage `partitions`: the rootfs tarball as one filesystem image per partition.

Input: `export`'s `rootfs` (rootfs.tar.zst). Outputs: one per layout partition that has
a filesystem, named after it: `{"root": "root.ext4", "boot": "boot.vfat", ...}`.
Config: the `layout` section, and the files the configuration puts into the image
(edibuild/image/imagefiles.py): the Mender artifact name as /etc/mender/artifact_info,
GRUB's grub.cfg on the EFI system partition for a `bootloader`, and for a Mender-ready
layout GRUB's environment, /etc/mender/mender.conf and device_type.
Each partition with `content` gets that rootfs subtree (its mount point stays, empty, in
the root partition); UUIDs, hash seed and volume ids derive from the stage key, so the
same inputs give bit-identical images. A copy of the root partition (the second root
slot) has no image of its own: the disk stage writes the root image there too.
A `margin` with a fixed size is the free space the content must leave (room for a
kernel upgrade, say).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.errors import CommandFailed, ConfigError, StageFailed
from edibuild.image import grub
from edibuild.image.imagefiles import ImageFile, image_files
from edibuild.image.layout import Layout, Partition, auto_size, format_size, layout_of
from edibuild.lazy import lazy_import

if TYPE_CHECKING:
    from edibuild.image import fsimage
    from edibuild.store import ramscratch
else:  # only a build needs them, not planning
    fsimage = lazy_import("edibuild.image.fsimage")
    ramscratch = lazy_import("edibuild.store.ramscratch")

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
    """The layout, the Mender artifact name that goes into the root filesystem, and the
    digests of the files the configuration writes (so a change in how they are made, in
    edibuild/image/grub.py say, reruns the stage too)."""
    mender = project.mender
    files = files_of(project, "ROOT-UUID")
    return {
        "layout": layout_of(project).to_json(),
        "artifact_name": mender.artifact_name if mender is not None else None,
        "files": {f"{f.partition}:{f.path}": hashlib.sha256(f.data).hexdigest() for f in files},
    }


def files_of(project: Project, root_uuid: str) -> list[ImageFile]:
    """The files the project's configuration puts into the partitions' trees."""
    return image_files(layout_of(project), project.bootloader, project.mender, root_uuid)


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
    if part.margin and needed + part.margin > part.size:
        raise _too_small(ctx, part, needed + part.margin, with_margin=True)
    return part.size, needed


def _too_small(
    ctx: StageContext, part: Partition, needed: int, *, with_margin: bool = False
) -> ConfigError:
    margin = f" (with its margin of {format_size(part.margin)} free)" if with_margin else ""
    return ConfigError(
        f"partition {part.key} is {format_size(part.size or 0)}, but its content "
        f"{part.content} needs at least {format_size(needed)}{margin}",
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
                uuid=ext4_uuid(ctx, part),
                hash_seed=fsimage.derive_uuid(ctx.key, f"{part.name}:hash_seed"),
                epoch=epoch,
                options=part.options,
            )
            fsimage.make_ext4(image, size, tree, params, ctx.log)
            info.update(uuid=params.uuid, free=fsimage.ext4_free(image))
        else:
            volume_id = fsimage.derive_hex(ctx.key, f"{part.name}:volume_id")
            skipped = fsimage.make_vfat(image, size, tree, part.label, volume_id, epoch, ctx.log,
                                        options=part.options)  # fmt: skip
            info.update(volume_id=volume_id, skipped=skipped)
    except CommandFailed as exc:
        if part.size is not None and ("space" in str(exc) or "full" in str(exc)):
            raise _too_small(ctx, part, needed) from exc
        raise
    return info


def ext4_uuid(ctx: StageContext, part: Partition) -> str:
    """The file system UUID of an ext4 partition (derived from the stage key)."""
    return fsimage.derive_uuid(ctx.key, f"{part.name}:uuid")


def add_file(root: Path, relative: str, data: bytes, epoch: int, mode: int = 0o644) -> None:
    """Write a file into the tree with mtime `epoch`, keeping the parents' mtimes unchanged."""
    path = root / relative
    parents = [root / p for p in Path(relative).parents]
    before = {p: p.stat().st_mtime_ns for p in parents if p.exists()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    for parent in [path, *parents]:
        mtime = before.get(parent, epoch * 1_000_000_000)
        os.utime(parent, ns=(mtime, mtime))


# What the configuration's files rely on in the configured root file system, and the
# playbook that provides it.
NEEDED = {
    grub.CONFIG: ((grub.EFI_BINARY, "esp", "the grub_efi playbook builds it"),),
    grub.ENV_FILES[0]: (
        ("usr/bin/mender", "root", "the mender_client playbook installs the client"),
        ("usr/bin/grub-mender-grubenv-set", "root", "the mender_client playbook installs it"),
        ("usr/bin/grub-editenv", "root", "the mender_client playbook installs grub-common"),
    ),
}


def check_needed(ctx: StageContext, files: list[ImageFile], trees: dict[str, Path | None],
                 esp: str | None) -> None:  # fmt: skip
    """Stop when the rootfs lacks what a written file relies on (a playbook left out)."""
    root = layout_of(ctx.project).root.name
    for written in files:
        for path, where, hint in NEEDED.get(written.path, ()):
            tree = trees[esp if where == "esp" and esp else root]
            if tree is None or not os.path.lexists(tree / path):
                place = "the EFI system partition's content" if where == "esp" else "the rootfs"
                raise StageFailed(f"{place} has no {path}, which {written.path} needs",
                                  hint=f"{hint} (see projects/common/qemu-vm.yml)")  # fmt: skip


def write_files(ctx: StageContext, trees: dict[str, Path | None]) -> None:
    """Write the configuration's files into the partitions' trees."""
    layout = layout_of(ctx.project)
    files = files_of(ctx.project, ext4_uuid(ctx, layout.root))
    esp = next((f.partition for f in files if f.path == grub.CONFIG), None)
    check_needed(ctx, files, trees, esp)
    for file in files:
        tree = trees[file.partition]
        assert tree is not None, f"{file.partition} has no tree for {file.path}"
        add_file(tree, file.path, file.data, ctx.source_date_epoch, file.mode)


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
        trees = split_trees(ctx, layout, rootfs, base)
        write_files(ctx, trees)
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
