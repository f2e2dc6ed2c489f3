"""Trim the artifact cache to a size budget, least recently used first.

What any project's installed outputs point at is never removed: the blobs behind
`artifacts/*/.state/*.json` and the cache entries of their keys. Entries are used
(touched) on every cache hit, so their modification time orders them by last use.
Only what the listing of `blobs/` and `keys/` finds is removed, each file through the
checked removal of edibuild/store/fsutil.py: what an entry or pointer names is never a path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from edibuild.errors import EdibuildError
from edibuild.store.cache import Cache, is_digest
from edibuild.store.fsutil import read_json, remove_file

FRESH_SECONDS = 3600
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_budget(text: str) -> int:
    """'20GiB' / '500M' / '1.5T' / '1000000' -> bytes (exactly: no float rounding)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise EdibuildError(f"cannot read the cache budget {text!r}", hint="write e.g. 20GiB")
    return int(Fraction(match.group(1)) * UNITS[match.group(2).upper()])


@dataclass
class TrimReport:
    """What trimming did."""

    before: int
    after: int
    entries_removed: int
    blobs_removed: int
    protected: int


def protected_state(artifacts_root: Path) -> tuple[set[str], set[str]]:
    """Digests and (stage, key) names that installed project outputs point at."""
    digests: set[str] = set()
    keys: set[str] = set()
    for pointer in artifacts_root.glob("*/.state/*.json"):
        data = read_json(pointer)
        outputs = data.get("outputs") if isinstance(data, dict) else None
        if isinstance(outputs, dict):
            digests.update(_digests(outputs))
        key_file = pointer.with_suffix(".key")
        if key_file.exists():
            keys.add(f"{pointer.stem}/{key_file.read_text().strip()}")
    return digests, keys


def _keep(path: Path, *roots: Path) -> bool:
    """What a dry run does instead of removing a file: nothing."""
    return False


def _digests(outputs: dict[str, object]) -> set[str]:
    """The well-formed sha256 digests of an entry's or pointer's outputs."""
    found = (out.get("sha256") for out in outputs.values() if isinstance(out, dict))
    return {str(digest) for digest in found if is_digest(digest)}


def _blobs(cache: Cache) -> dict[str, tuple[Path, int, float]]:
    found = {}
    for blob in (cache.root / "blobs").glob("*/*"):
        st = blob.lstat()
        if is_digest(blob.name) and blob.parent.name == blob.name[:2]:
            found[blob.name] = (blob, st.st_size, st.st_mtime)
    return found


def cache_size(cache: Cache) -> int:
    """The bytes of the cache's blobs (what trimming counts), from one listing."""
    return sum(size for _, size, _ in _blobs(cache).values())


@dataclass
class _Tally:
    """What a trim has removed so far, and the size left."""

    total: int
    entries: int = 0
    blobs: int = 0


def _referenced(entries: list[Path]) -> dict[str, set[str]]:
    """The blob digests each cache entry (`stage/key`) names."""
    referenced: dict[str, set[str]] = {}
    for entry in entries:
        data = read_json(entry)
        outputs = data.get("outputs") if isinstance(data, dict) else None
        referenced[f"{entry.parent.name}/{entry.stem}"] = (
            _digests(outputs) if isinstance(outputs, dict) else set()
        )
    return referenced


def _remove_unnamed_blobs(
    blobs: dict[str, tuple[Path, int, float]],
    still_used: set[str],
    blob_root: Path,
    budget: int,
    tally: _Tally,
    remove: Callable[..., object],
) -> None:
    """Remove blobs no entry names (left by forgotten entries), oldest first, to fit."""
    recent = time.time() - FRESH_SECONDS
    for digest, (path, size, mtime) in sorted(blobs.items(), key=lambda kv: kv[1][2]):
        if tally.total <= budget:
            break
        # A fresh blob may belong to a build that has not written its entry yet.
        if digest not in still_used and mtime < recent:
            remove(path, blob_root)
            tally.total -= size
            tally.blobs += 1


def trim(
    cache: Cache,
    artifacts_root: Path,
    budget: int,
    dry_run: bool = False,
    min_age: float = 0,
) -> TrimReport:
    """Remove unprotected entries (oldest use first), then unreferenced blobs, to fit.

    With `dry_run` nothing is removed: the report says what a trim would remove. Entries
    used less than `min_age` seconds ago stay (another build may be installing them).
    """
    remove = _keep if dry_run else remove_file
    used_lately = time.time() - min_age
    keep_digests, keep_keys = protected_state(artifacts_root)
    blobs = _blobs(cache)
    blob_root, key_root = cache.root / "blobs", cache.root / "keys"
    before = sum(size for _, size, _ in blobs.values())
    tally = _Tally(before)
    entries = sorted(key_root.glob("*/*.json"), key=lambda p: p.lstat().st_mtime)
    referenced = _referenced(entries)
    for entry in entries:
        if tally.total <= budget:
            break
        name = f"{entry.parent.name}/{entry.stem}"
        if name in keep_keys or (min_age and entry.lstat().st_mtime > used_lately):
            continue
        remove(entry, key_root)
        tally.entries += 1
        digests = referenced.pop(name)
        still_used = set().union(*referenced.values()) | keep_digests
        for digest in digests - still_used:
            if digest in blobs:
                path, size, _ = blobs.pop(digest)
                remove(path, blob_root)
                tally.total -= size
                tally.blobs += 1
    still_used = set().union(*referenced.values()) | keep_digests
    _remove_unnamed_blobs(blobs, still_used, blob_root, budget, tally, remove)
    return TrimReport(before, tally.total, tally.entries, tally.blobs, len(keep_digests))
