"""Scratch space in memory for unpacked root file systems, when there is room for them.

Export and partitions unpack a root file system (tens of thousands of files, a gigabyte
or more) only to read it once and delete it. On a tmpfs that costs a third of what it
costs on a disk file system (measured on the project's build machines: 4 s instead of
8-15 s to unpack, next to nothing to delete), so such a tree goes to a private folder
of `/dev/shm` when the tmpfs has room for it and the machine's available memory keeps
MEMORY_RESERVE besides; otherwise, or with `EDIBUILD_RAM_SCRATCH=off`, to the build's
scratch space on disk as before. `EDIBUILD_RAM_SCRATCH=DIR` names another tmpfs folder.

The private folder (`edibuild-<uid>` mode 0700, never a link: anything else there and
the disk is used) holds one directory per build, named after its process; what a killed
build left is removed by the next build that asks for memory scratch. Every removal is
the checked one of edibuild/store/fsutil.py.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from edibuild import orphans
from edibuild.store.fsutil import remove_tree

DEFAULT_ROOT = Path("/dev/shm")
MEMORY_RESERVE = 4 * 2**30  # available memory that must stay free besides the tree
ENV = "EDIBUILD_RAM_SCRATCH"
_counter = itertools.count()


def unpacked_size(archive: Path) -> int:
    """A generous guess of the bytes a zstd-compressed root file system takes unpacked
    (they pack 3-4 to 1; MEMORY_RESERVE covers a worse ratio)."""
    return 4 * archive.stat().st_size + 256 * 2**20


def _available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 when it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def private_root(env: Mapping[str, str] | None = None) -> Path | None:
    """This user's folder on the tmpfs (made if missing), or None when there is none to use."""
    env = os.environ if env is None else env
    setting = env.get(ENV, "")
    if setting.lower() in ("off", "0", "no", "false"):
        return None
    base = Path(setting) if setting else DEFAULT_ROOT
    if not base.is_dir():
        return None
    root = base / f"edibuild-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    try:
        st = root.lstat()
    except OSError:
        return None
    mine = st.st_uid == os.geteuid() and not st.st_mode & 0o077
    return root if stat.S_ISDIR(st.st_mode) and mine else None


def fits(root: Path, need: int) -> bool:
    """True when `need` bytes fit on the tmpfs and in memory with MEMORY_RESERVE to spare."""
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return False
    return free > need and _available_memory() > need + MEMORY_RESERVE


def remove_stale(root: Path) -> None:
    """Remove the directories of builds whose process is gone."""
    for path in root.iterdir():
        pid = path.name.split("-")[0]
        if pid.isdigit() and not orphans.alive(int(pid)):
            remove_tree(path, root)


@contextlib.contextmanager
def tree_dir(fallback: Path, need: int, env: Mapping[str, str] | None = None) -> Iterator[Path]:
    """An empty directory for a tree of about `need` bytes: in memory when it fits, else
    `fallback` (made here, on disk; removed by the caller's scratch space). Yields it;
    a directory in memory is removed afterwards."""
    root = private_root(env)
    if root is None or not fits(root, need):
        fallback.mkdir(parents=True)
        yield fallback
        return
    remove_stale(root)
    path = root / f"{os.getpid()}-{next(_counter)}"
    path.mkdir()
    try:
        yield path
    finally:
        remove_tree(path, root)
