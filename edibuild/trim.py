"""Trim the artifact cache to a size budget, least recently used first.

What any project's installed outputs point at is never removed: the blobs behind
`artifacts/*/.state/*.json` and the cache entries of their keys. Entries are used
(touched) on every cache hit, so their modification time orders them by last use.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from edibuild.errors import EdibuildError
from edibuild.fsutil import read_json, unlink
from edibuild.store import Cache

FRESH_SECONDS = 3600
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_budget(text: str) -> int:
    """'20GiB' / '500M' / '1000000' -> bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise EdibuildError(f"cannot read the cache budget {text!r}", hint="write e.g. 20GiB")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


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
        if isinstance(data, dict):
            digests.update(o["sha256"] for o in data.get("outputs", {}).values())
        key_file = pointer.with_suffix(".key")
        if key_file.exists():
            keys.add(f"{pointer.stem}/{key_file.read_text().strip()}")
    return digests, keys


def _keep(path: Path) -> None:
    """What a dry run does instead of removing a file."""


def _blobs(cache: Cache) -> dict[str, tuple[int, float]]:
    found = {}
    for blob in (cache.root / "blobs").glob("*/*"):
        st = blob.stat()
        found[blob.name] = (st.st_size, st.st_mtime)
    return found


def trim(cache: Cache, artifacts_root: Path, budget: int, dry_run: bool = False) -> TrimReport:
    """Remove unprotected entries (oldest use first), then unreferenced blobs, to fit.

    With `dry_run` nothing is removed: the report says what a trim would remove.
    """
    remove = _keep if dry_run else unlink
    keep_digests, keep_keys = protected_state(artifacts_root)
    blobs = _blobs(cache)
    total = before = sum(size for size, _ in blobs.values())
    entries = sorted((cache.root / "keys").glob("*/*.json"), key=lambda p: p.stat().st_mtime)
    referenced: dict[str, set[str]] = {}
    for entry in entries:
        data = read_json(entry) or {}
        referenced[f"{entry.parent.name}/{entry.stem}"] = {
            o["sha256"] for o in data.get("outputs", {}).values()
        }
    removed_entries = removed_blobs = 0
    for entry in entries:
        if total <= budget:
            break
        name = f"{entry.parent.name}/{entry.stem}"
        if name in keep_keys:
            continue
        remove(entry)
        removed_entries += 1
        digests = referenced.pop(name)
        still_used = set().union(*referenced.values()) | keep_digests
        for digest in digests - still_used:
            if digest in blobs:
                remove(cache.blob(digest))
                total -= blobs.pop(digest)[0]
                removed_blobs += 1
    # Blobs no entry names (left by forgotten entries) go too, oldest first.
    still_used = set().union(*referenced.values()) | keep_digests
    recent = time.time() - FRESH_SECONDS
    for digest, (size, mtime) in sorted(blobs.items(), key=lambda kv: kv[1][1]):
        if total <= budget:
            break
        # A fresh blob may belong to a build that has not written its entry yet.
        if digest not in still_used and mtime < recent:
            remove(cache.blob(digest))
            total -= size
            removed_blobs += 1
    return TrimReport(before, total, removed_entries, removed_blobs, len(keep_digests))
