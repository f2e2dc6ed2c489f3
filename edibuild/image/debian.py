"""Debian root file system helpers shared by stages: package lists, reproducible tarballs."""

from __future__ import annotations

from pathlib import Path

from edibuild.engine.stage import StageContext
from edibuild.store.fsutil import remove_file, remove_tree

# Host-specific or volatile state that never belongs in an artifact.
VOLATILE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "var/log",
    "tmp",
    "run",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
)


def installed_packages(status: str) -> list[dict[str, str]]:
    """Parse a dpkg status file into [{name, version, architecture}] of installed packages."""
    packages = []
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            packages.append(
                {
                    "name": fields["Package"],
                    "version": fields.get("Version", ""),
                    "architecture": fields.get("Architecture", ""),
                }
            )
    return sorted(packages, key=lambda p: (p["name"], p["architecture"]))


def strip_host_state(tree: Path) -> None:
    """Empty caches, logs and machine identity so the tree does not depend on the build host."""
    for rel in VOLATILE:
        path = tree / rel
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if child.name in ("partial", "lock"):
                    continue
                remove_tree(child, tree)  # a symlink goes itself, never what it names
        elif path.exists() or path.is_symlink():
            remove_file(path, tree)
    machine_id = tree / "etc/machine-id"
    if machine_id.exists():
        machine_id.write_text("")


def reproducible_tar(ctx: StageContext, tree: Path, tarball: Path) -> None:
    """Tar a tree with sorted names, numeric owners and clamped times, compressed by zstd."""
    ctx.run(
        [
            "tar",
            "--sort=name",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            f"--mtime=@{ctx.source_date_epoch}",
            "--clamp-mtime",
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "--format=posix",
            "-I",
            "zstd -T1 -6 --no-progress",
            "-C",
            tree,
            "-cf",
            tarball,
            ".",
        ],
        env=ctx.env,
    )
