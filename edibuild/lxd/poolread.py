"""Read a stopped container straight from a local `dir` storage pool, as LXD's export would.

Publishing a container and streaming the image out (what `Instance.exported` does) makes
LXD tar the tree, hash it, store it, then read it back: 15-17 s for a 1 GB root file
system on this machine kind, where one tar of the folder takes 4 s. The folder holds the
files with the container's shifted owners (100000 and up) and v3 file capabilities whose
root id is the shifted root. Run inside a user namespace with the container's own id map
(`unshare --map-users`), tar sees them as the container does: owners unshifted, v3
capabilities and ACLs translated by the kernel, as LXD's publish writes them.

Only for a daemon on this machine whose pool is a plain folder, a map of one uid and one
gid range, and an `unshare` that can map ranges (util-linux 2.38); otherwise None, and
the caller publishes. Nothing here writes into the pool.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

IDMAP_KEY = "volatile.last_state.idmap"
XATTRS = ("--xattrs", "--xattrs-include=*", "--acls")
# "." becomes "rootfs" and "./x" "rootfs/x" (LXD's layout); S: symbolic link targets stay.
RENAME = r"--transform=s,^\.$,rootfs,S;s,^\./,rootfs/,S"


@dataclass(frozen=True)
class IdRange:
    """`count` ids from `host` on the host are `inside` and up in the container."""

    host: int
    inside: int
    count: int

    def option(self) -> str:
        """unshare's form: outer,inner,count."""
        return f"{self.host},{self.inside},{self.count}"


@dataclass(frozen=True)
class LocalFolder:
    """A stopped container's folder in a local dir pool and the ids its files carry."""

    path: Path  # holds metadata.yaml and rootfs/
    uids: IdRange | None  # None: a privileged container, owners as they are
    gids: IdRange | None

    @property
    def rootfs(self) -> Path:
        """The container's root file system."""
        return self.path / "rootfs"


def id_ranges(
    config: Mapping[str, str], privileged: bool
) -> tuple[IdRange | None, IdRange | None] | None:
    """The uid and gid range of the container's last id map: (None, None) for a
    privileged container (no map); None when the map is missing or unreadable or has more
    ranges than one of each (then the caller publishes)."""
    raw = config.get(IDMAP_KEY, "")
    try:
        entries = json.loads(raw) if raw else None
        if not isinstance(entries, list):
            return None
        uids = [_range(e) for e in entries if e.get("Isuid")]
        gids = [_range(e) for e in entries if e.get("Isgid")]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not uids and not gids and privileged:
        return (None, None)
    if len(uids) != 1 or len(gids) != 1:
        return None
    return (uids[0], gids[0])


def _range(entry: Mapping[str, object]) -> IdRange:
    """One entry of LXD's idmap JSON."""
    values = (entry["Hostid"], entry["Nsid"], entry["Maprange"])
    ids = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    if len(ids) != len(values) or ids[2] == 0:
        raise ValueError(f"not an id range: {entry}")
    return IdRange(*ids)


@functools.cache
def unshare_maps_ranges() -> bool:
    """True when this machine's unshare has --map-users (util-linux 2.38 and later)."""
    from edibuild.errors import CommandFailed
    from edibuild.run import run  # only when exporting (not at planning)

    try:
        found = run(["unshare", "--help"], capture=True, check=False, timeout=10)
    except CommandFailed:  # not installed, or hung
        return False
    return b"--map-users" in found.stdout


def tar_argv(folder: LocalFolder, compress: str) -> list[str]:
    """The command that writes the folder's rootfs/ as tar to stdout, compressed by
    `compress`; run it with the rootfs as working directory (the pool's folders above it
    are closed to the namespace's users)."""
    tar = [
        "tar", "--create", "--file=-", f"--use-compress-program={compress}",
        "--numeric-owner", "--format=posix", "--one-file-system", *XATTRS, RENAME, ".",
    ]  # fmt: skip
    if folder.uids is None or folder.gids is None:
        return tar
    return [
        "unshare", "--user", f"--map-users={folder.uids.option()}",
        f"--map-groups={folder.gids.option()}", "--setuid=0", "--setgid=0", "--", *tar,
    ]  # fmt: skip


def metadata_member(metadata: bytes) -> bytes:
    """metadata.yaml as a tar member (header and padded data, no end of archive), to go
    before the rootfs/ members: the start of LXD's unified image tarball."""
    import tarfile  # only when exporting (not at planning)

    info = tarfile.TarInfo("metadata.yaml")
    info.size = len(metadata)
    info.mode = 0o644
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return header + metadata + bytes(-len(metadata) % tarfile.BLOCKSIZE)


def metadata_yaml(folder: LocalFolder, properties: Mapping[str, str]) -> bytes:
    """The container's metadata.yaml with `properties` merged in, as a publish writes it."""
    import yaml  # only when exporting

    data = yaml.safe_load((folder.path / "metadata.yaml").read_bytes()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{folder.path / 'metadata.yaml'}: not a mapping")
    data["properties"] = {**dict(data.get("properties") or {}), **properties}
    return yaml.safe_dump(data, sort_keys=True).encode()
