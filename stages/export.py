"""Stage export: make the configured container's root file system a reproducible tarball.

Input: configure/container (LXD's unified image tarball, rootfs/ inside). Output:
`rootfs` (rootfs.tar.zst): names sorted, numeric owners, mtimes clamped to
SOURCE_DATE_EPOCH, pax headers without atime/ctime, zstd level 3 (multi-threaded mode,
whose output does not depend on the number of cores); without per-build state (the
contents of /tmp and /run, apt lists and caches, logs and the journal of the build
container, ldconfig's aux-cache, man-db's index, random seeds); with an empty
/etc/machine-id. Two configure runs of the same inputs so export the same bytes, and the
stages after export do not run again (early cut-off; `bench/repro.py` measures it).
Info: the installed packages (dpkg-query on the exported tree) as a JSON list.
No LXD is needed here: the container's life ended in the configure stage.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.image.reproducible import source_date_epoch
from edibuild.lazy import lazy_import
from edibuild.run import output, say

if TYPE_CHECKING:
    from edibuild.store import ramscratch
else:  # only a build needs it, not planning
    ramscratch = lazy_import("edibuild.store.ramscratch")

# Directories whose whole contents never belong in an image (the directories stay).
# var/log/journal: the build container's journal, in a directory named by its machine
# id; journald makes the booted device's own.
EMPTIED = ("tmp", "var/tmp", "run", "var/log/journal")
# Directories whose files go but whose subdirectories stay (apt and services expect them).
# var/cache/man: man-db's index (its timer rebuilds it; man works without it).
FILES_REMOVED = ("var/lib/apt/lists", "var/cache/apt", "var/log", "var/cache/man")
# Single files to drop wherever they exist: per-machine secrets and seeds, backups,
# ldconfig's aux-cache (inode numbers and ctimes; ldconfig rebuilds it, Debian #845034;
# /etc/ld.so.cache itself is deterministic and stays), the build's own apt and dpkg
# settings (configure removes them; a container stopped halfway would keep them).
DROPPED = (
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/credential.secret",
    "var/lib/urandom/random-seed",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/passwords.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/available-old",
    "etc/apt/apt.conf.d/00edibuild-proxy",
    "etc/apt/apt.conf.d/00edibuild-build",
    "etc/dpkg/dpkg.cfg.d/00edibuild-build",
)
ZSTD_LEVEL = "-3"
XATTRS = ("--xattrs", "--xattrs-include=*")


def outputs(project: Project) -> Mapping[str, str]:
    """One output: the reproducible root file system tarball."""
    return {"rootfs": "rootfs.tar.zst"}


def config(project: Project) -> Json:
    """What is scrubbed, the compression and the epoch."""
    return {
        "emptied": list(EMPTIED),
        "files_removed": list(FILES_REMOVED),
        "dropped": list(DROPPED),
        "zstd": ZSTD_LEVEL,
        "source_date_epoch": source_date_epoch(project),
    }


def inside(tree: Path, rel: str) -> Path | None:
    """`tree/rel` if its parent resolves inside `tree` (no symlink leads out), else None."""
    path = tree / rel
    try:
        path.parent.resolve().relative_to(tree.resolve())
    except ValueError:
        return None
    return path


def _empty_dir(folder: Path) -> None:
    """Remove everything inside `folder`, but keep `folder` itself."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _remove_files(folder: Path) -> None:
    """Remove the files (and links) below `folder`, keeping its directories."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for entry in sorted(folder.rglob("*")):
        if not entry.is_dir() or entry.is_symlink():
            entry.unlink()


def scrub(tree: Path) -> None:
    """Remove per-build state from a root file system tree (EMPTIED, FILES_REMOVED, DROPPED).

    Paths whose parent is a symlink leading out of the tree are left alone, so nothing
    of the host is ever touched.
    """
    for rel in EMPTIED:
        if (folder := inside(tree, rel)) is not None:
            _empty_dir(folder)
    for rel in FILES_REMOVED:
        if (folder := inside(tree, rel)) is not None:
            _remove_files(folder)
    for rel in DROPPED:
        path = inside(tree, rel)
        if path is not None and (path.is_file() or path.is_symlink()):
            path.unlink()
    machine_id = tree / "etc" / "machine-id"
    if machine_id.exists() or machine_id.is_symlink():
        machine_id.unlink()
    machine_id.write_bytes(b"")
    machine_id.chmod(0o444)


def packages(tree: Path) -> list[dict[str, str]]:
    """Return the installed packages of a tree as [{name, version, architecture}]."""
    text = output(
        [
            "dpkg-query",
            f"--admindir={tree / 'var/lib/dpkg'}",
            "-W",
            "-f",
            "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n",
        ]
    )
    found = []
    for line in text.splitlines():
        status, name, version, arch = line.split("\t")
        if status.startswith("ii"):
            found.append({"name": name, "version": version, "architecture": arch})
    return sorted(found, key=lambda p: (p["name"], p["architecture"]))


def tar_command(tree: Path, target: Path, epoch: int, compress: str | None = None) -> list[str]:
    """Return the GNU tar command line that archives `tree` reproducibly.

    With `compress` (a command tar runs itself, e.g. "zstd -q -T0 -3"), the archive is
    compressed as it is written, without an uncompressed copy on disk.
    """
    program = [f"--use-compress-program={compress}"] if compress else []
    return [
        "tar", "--create", *program, f"--file={target}", f"--directory={tree}",
        "--sort=name", "--numeric-owner", "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        f"--mtime=@{epoch}", "--clamp-mtime", *XATTRS, "--acls", ".",
    ]  # fmt: skip


def unpack_command(archive: Path, tree: Path) -> list[str]:
    """Return the tar command that unpacks the rootfs/ of LXD's image tarball into `tree`."""
    return [
        "tar", "--extract", "--zstd", f"--file={archive}", f"--directory={tree}",
        "--numeric-owner", "--same-permissions", *XATTRS, "--acls",
        "--strip-components=1", "rootfs",
    ]  # fmt: skip


def build(ctx: StageContext) -> Json:
    """Unpack the configured container (in memory when it fits), scrub it, pack it
    reproducibly."""
    container = ctx.input("configure", "container")
    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(
            ramscratch.tree_dir(ctx.scratch("rootfs"), ramscratch.unpacked_size(container))
        )
        say(f"export: unpacking the configured container (in {tree.parent})")
        with ctx.phase("unpack"):
            ctx.run(unpack_command(container, tree))
        with ctx.phase("scrub"):
            scrub(tree)
            installed = packages(tree)
        say(f"export: packing {len(installed)} packages' root file system")
        compress = f"zstd -q -T0 {ZSTD_LEVEL}"
        with ctx.phase("pack"):
            ctx.run(
                tar_command(tree, ctx.output("rootfs"), ctx.source_date_epoch, compress),
                env=ctx.env,
            )
        with ctx.phase("remove"):
            stack.close()
    return {"packages": installed}


def tools(project: Project) -> tuple[Tool, ...]:
    """tar, zstd and dpkg-query (the package list)."""
    return (Tool("tar", "tar"), Tool("zstd", "zstd"), Tool("dpkg-query", "dpkg"))


STAGE = Stage(
    name="export",
    doc="Export the configured root file system as a reproducible tarball",
    upstream=("configure",),
    outputs=outputs,
    config=config,
    build=build,
    tools=tools,
)
