"""A full disk during a build: which folder is full, and how much the stage needs there.

A stage writes in three places: its scratch space (`<cache>/tmp`), the cache's blobs
(its outputs, moved or copied there) and the project's artifact folder (its log and
manifest, and copies of the outputs when the artifacts live on another file system).
While a stage builds, `Peak` samples how much its scratch space holds; the peak and the
outputs' size go into the stage's info (`space`), so the next time the disk is full the
message can say how much the stage needs, from its last build in this workspace or in
the cache, or else a lower bound from the size of its inputs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from edibuild.store.fsutil import read_json

FULL_TEXT = "No space left on device"
MIN_INTERVAL = 2.0
QUIET_SHARE = 20  # sample at most 1/20th of the time: a walk of a big tree costs


def is_full(exc: BaseException) -> bool:
    """True when an error (or one it came from) is a full file system."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if FULL_TEXT.lower() in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def usage(root: Path) -> int:
    """Bytes allocated below `root` on its own file system (mounts below are skipped)."""
    try:
        device = root.lstat().st_dev
    except OSError:
        return 0
    total = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != device:
                continue
            total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return total


class Peak:
    """Sample the bytes a folder holds in a background thread; keep the largest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="edibuild-space", daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)

    def measure(self) -> int:
        """Sample now (also at the end of a build, when the outputs are all there)."""
        self.peak = max(self.peak, usage(self.root))
        return self.peak

    def _sample(self) -> None:
        interval = MIN_INTERVAL
        while not self._stop.wait(interval):
            started = time.monotonic()
            self.measure()
            interval = max(MIN_INTERVAL, QUIET_SHARE * (time.monotonic() - started))


@dataclass(frozen=True)
class Need:
    """What a stage needs: bytes of scratch space and of outputs, and where that is known from."""

    scratch: int
    outputs: int
    source: str


def recorded(infos: Iterable[object]) -> Need | None:
    """The need recorded by the first info that has one (`space` of a build's info)."""
    for info in infos:
        space = info.get("space") if isinstance(info, dict) else None
        if isinstance(space, dict) and isinstance(space.get("scratch"), int):
            outputs = space.get("outputs")
            return Need(space["scratch"], outputs if isinstance(outputs, int) else 0, "")
    return None


def newest_entries(keys_dir: Path, limit: int = 20) -> list[object]:
    """The infos of the newest cache entries of one stage (for an estimate)."""
    try:
        files = sorted(keys_dir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    infos = []
    for path in files[:limit]:
        data = read_json(path)
        if isinstance(data, dict):
            infos.append(data.get("info"))
    return infos


def estimate(manifest_info: object, entry_infos: Sequence[object], inputs_size: int) -> Need:
    """The stage's need: its last build here, else in the cache, else its inputs' size."""
    found = recorded([manifest_info])
    if found is not None:
        return Need(found.scratch, found.outputs, "measured on its last build")
    found = recorded(entry_infos)
    if found is not None:
        return Need(found.scratch, found.outputs, "measured on its last build in the cache")
    return Need(inputs_size, inputs_size, "at least the size of its inputs")


def free_bytes(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the file system holding `path` (or its nearest parent)."""
    for candidate in (path, *path.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    return 0, 0


def human(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns


@dataclass(frozen=True)
class Place:
    """A folder a stage writes to, what it is to people, and how much it needs there."""

    what: str
    path: Path
    needs: int


def _device(path: Path) -> int:
    for candidate in (path, *path.parents):
        try:
            return candidate.stat().st_dev
        except OSError:
            continue
    return -1


def full_message(places: Sequence[Place], need: Need) -> tuple[str, str]:
    """The message and hint for a full disk: the full file system(s), named by folder."""
    groups: dict[int, list[Place]] = {}
    for place in places:
        groups.setdefault(_device(place.path), []).append(place)
    rows = []
    for group in groups.values():
        free, total = free_bytes(group[0].path)
        needs = sum(p.needs for p in group)
        rows.append((free < max(needs, 1 << 20), free, total, needs, group))
    full = [r for r in rows if r[0]] or sorted(rows, key=lambda r: r[1])[:1]
    parts = []
    for _, free, total, needs, group in full:
        where = " and ".join(f"{p.what} {p.path}" for p in group)
        if len(group) > 1:
            where += " (one file system)"
        parts.append(
            f"{where}: {human(free)} free of {human(total)}, the stage needs about "
            f"{human(needs)} there"
        )
    message = "no space left on the device: " + "; ".join(parts) + f" ({need.source})"
    hint = (
        "free space there (`doit trim --budget SIZE` trims the cache), or point "
        "EDIBUILD_CACHE / EDIBUILD_ARTIFACTS at a larger disk, then run the build again"
    )
    return message, hint


def places(
    scratch_root: Path, cache_root: Path, artifacts: Path, need: Need, copies: bool
) -> list[Place]:
    """Where a stage writes: scratch (peak), cache (outputs), artifacts (log, or copies)."""
    return [
        Place("the scratch space", scratch_root, need.scratch),
        Place("the cache", cache_root / "blobs", need.outputs),
        Place("the artifact folder", artifacts, need.outputs if copies else 1 << 20),
    ]


def sizes(paths: Mapping[str, Mapping[str, Path]]) -> int:
    """The total size of a stage's input files."""
    total = 0
    for outputs in paths.values():
        for path in outputs.values():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
    return total
