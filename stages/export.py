"""Stage export: make the configured container's root file system a reproducible tarball.

Input: configure/container (LXD's unified image tarball, rootfs/ inside). Output:
`rootfs` (rootfs.tar.zst): names sorted, numeric owners, mtimes clamped to
SOURCE_DATE_EPOCH, pax headers without atime/ctime, zstd level 9; without the
contents of /tmp, /run, apt lists and caches, logs; with an empty /etc/machine-id.
Info: the installed packages (dpkg-query on the exported tree) as a JSON list.
No LXD is needed here: the container's life ended in the configure stage.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from edibuild.project import Json, Project
from edibuild.run import output, say
from edibuild.stage import Stage, StageContext, Tool

# Directories whose whole contents never belong in an image (the directories stay).
EMPTIED = ("tmp", "var/tmp", "run")
# Directories whose files go but whose subdirectories stay (apt and services expect them).
FILES_REMOVED = ("var/lib/apt/lists", "var/cache/apt", "var/log")
# Single files to drop wherever they exist.
DROPPED = (
    "var/lib/dbus/machine-id",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/available-old",
    "etc/apt/apt.conf.d/00edibuild-proxy",
)
ZSTD_LEVEL = "-9"
XATTRS = ("--xattrs", "--xattrs-include=*")


def _outputs(project: Project) -> Mapping[str, str]:
    return {"rootfs": "rootfs.tar.zst"}


def _config(project: Project) -> Json:
    return {
        "emptied": list(EMPTIED),
        "files_removed": list(FILES_REMOVED),
        "dropped": list(DROPPED),
        "zstd": ZSTD_LEVEL,
    }


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
    """Remove per-build state from a root file system tree (see EMPTIED and DROPPED)."""
    for rel in EMPTIED:
        _empty_dir(tree / rel)
    for rel in FILES_REMOVED:
        _remove_files(tree / rel)
    for rel in DROPPED:
        path = tree / rel
        if path.is_file() or path.is_symlink():
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


def tar_command(tree: Path, target: Path, epoch: int) -> list[str]:
    """Return the GNU tar command line that archives `tree` reproducibly."""
    return [
        "tar", "--create", f"--file={target}", f"--directory={tree}",
        "--sort=name", "--numeric-owner", "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        f"--mtime=@{epoch}", "--clamp-mtime", *XATTRS, "--acls", ".",
    ]  # fmt: skip


def build(ctx: StageContext) -> Json:
    """Unpack the configured container, scrub it and pack it reproducibly."""
    tree = ctx.scratch("rootfs")
    tree.mkdir(parents=True)
    say("export: unpacking the configured container")
    ctx.run(["tar", "--extract", "--zstd", f"--file={ctx.input('configure', 'container')}",
             f"--directory={tree}", "--numeric-owner", "--same-permissions", *XATTRS,
             "--acls", "--strip-components=1", "rootfs"])  # fmt: skip
    scrub(tree)
    installed = packages(tree)
    plain = ctx.scratch("rootfs.tar")
    say(f"export: packing {len(installed)} packages' root file system")
    ctx.run(tar_command(tree, plain, ctx.source_date_epoch), env=ctx.env)
    shutil.rmtree(tree)
    ctx.run(["zstd", "-q", "-T0", ZSTD_LEVEL, "--rm", plain, "-o", ctx.output("rootfs")])
    return {"packages": installed}


def _tools(project: Project) -> tuple[Tool, ...]:
    return (Tool("tar", "tar"), Tool("zstd", "zstd"), Tool("dpkg-query", "dpkg"))


STAGE = Stage(
    name="export",
    doc="Export the configured root file system as a reproducible tarball",
    upstream=("configure",),
    outputs=_outputs,
    config=_config,
    build=build,
    tools=_tools,
)
