"""The content-addressed cache: immutable blobs, input-key entries, locks and scratch space.

Layout (principle 3 of the design: content addressed):
  <cache>/blobs/ab/<sha256>          immutable outputs, named by their content
  <cache>/keys/<stage>/<key>.json    input key -> output digests and info (action cache)
  <cache>/tmp/<stage>+<project>+<pid>-<n>/   scratch space of running builds ('+' is in
                                     no name, so a stage's leftovers are told apart exactly)
The artifact folders that link to the blobs are store/artifacts.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edibuild.config.names import is_name
from edibuild.data import Json
from edibuild.errors import UnsafePath
from edibuild.run import say
from edibuild.store.fsutil import (
    confined,
    read_json,
    remove_file,
    remove_tree,
    sha256_file,
    write_json,
)

_counter = itertools.count()
_DIGEST = re.compile(r"[0-9a-f]{64}")
SCRATCH_SEP = "+"


def is_digest(text: object) -> bool:
    """True for a sha256 hex digest (what names blobs and input keys)."""
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


@dataclass(frozen=True)
class Output:
    """One stored output: its file name for users, digest and size."""

    file: str
    sha256: str
    size: int

    def as_json(self) -> dict[str, Any]:
        """Return the pointer form (no timestamps, so identical bytes compare equal)."""
        return {"file": self.file, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Entry:
    """A cache entry: what a stage produced for one input key."""

    stage: str
    key: str
    outputs: Mapping[str, Output]
    info: Json


class Cache:
    """A directory of blobs and action-cache entries, safe to share between builds."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def blob(self, sha256: str) -> Path:
        """Path of the blob with this digest (UnsafePath for anything but a digest)."""
        if not is_digest(sha256):
            raise UnsafePath(
                f"{sha256!r} is not a sha256 digest: no blob of {self.root} has that name",
                hint="a cache entry or pointer was edited by hand; remove it",
            )
        return self.root / "blobs" / sha256[:2] / sha256

    def entry_path(self, stage: str, key: str) -> Path:
        """Path of the action-cache entry of `stage` for input `key`."""
        return self.root / "keys" / stage / f"{key}.json"

    def peek(self, stage: str, key: str) -> Entry | None:
        """Like `lookup`, but only reading: for explanations, which must change nothing."""
        data = read_json(self.entry_path(stage, key))
        if not isinstance(data, dict) or not isinstance(data.get("outputs"), dict):
            return None
        outputs: dict[str, Output] = {}
        for name, out in data["outputs"].items():
            if not output_record(out) or not isinstance(out.get("mtime_ns"), int):
                return None  # not an entry this code wrote: never trusted
            try:
                st = self.blob(out["sha256"]).stat()
            except OSError:
                return None
            if st.st_size != out["size"] or st.st_mtime_ns != out["mtime_ns"]:
                return None
            outputs[name] = Output(out["file"], out["sha256"], out["size"])
        return Entry(stage, key, outputs, data.get("info"))

    def lookup(self, stage: str, key: str) -> Entry | None:
        """Return the entry if every blob is present and untouched, marking it used.

        An entry whose blob is gone or was written to (through a hard link, say) is
        forgotten: it is never trusted again.
        """
        entry = self.peek(stage, key)
        if entry is None:
            self.forget(stage, key)
            return None
        with contextlib.suppress(OSError):
            os.utime(self.entry_path(stage, key))  # least recently used, for trimming
        return entry

    def store(self, stage: str, key: str, files: Mapping[str, Path], info: Json) -> Entry:
        """Move finished output files into blobs and record the entry (entry last)."""
        outputs: dict[str, Any] = {}
        for name, path in files.items():
            digest = sha256_file(path)
            blob = self.blob(digest)
            blob.parent.mkdir(parents=True, exist_ok=True)
            if blob.exists():
                remove_file(path, self.root)
            else:
                os.chmod(path, 0o444)
                os.replace(path, blob)
            st = blob.stat()
            outputs[name] = {
                "file": path.name,
                "sha256": digest,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
            }
        record = {
            "stage": stage,
            "key": key,
            "outputs": outputs,
            "info": info,
            "created": time.time(),
        }
        write_json(self.entry_path(stage, key), record)
        entry = self.lookup(stage, key)
        assert entry is not None
        return entry

    @contextlib.contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold the build of one input key: a parallel build of the same inputs waits, then
        finds the result in the cache instead of building it twice."""
        path = self.root / "locks" / stage / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                say(f"{stage}: waiting for another build of the same inputs (key {key[:12]})")
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def forget(self, stage: str, key: str) -> None:
        """Drop an action-cache entry (its blobs stay until the cache is trimmed)."""
        remove_file(self.entry_path(stage, key), self.root / "keys")

    @property
    def scratch_root(self) -> Path:
        """Where builds get their scratch space (on the cache's file system)."""
        return self.root / "tmp"

    @contextlib.contextmanager
    def scratch(self, stage: str, project: str) -> Iterator[Path]:
        """A fresh scratch directory on the cache's file system, removed afterwards."""
        base = self.scratch_root
        self.remove_stale_scratch(stage, project)
        name = SCRATCH_SEP.join((stage, project, f"{os.getpid()}-{next(_counter)}"))
        path = base / name
        confined(path, base)
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            remove_tree(path, base)

    def remove_stale_scratch(self, stage: str, project: str) -> None:
        """Remove scratch left by a killed build of the same stage and project."""
        base = self.scratch_root
        if not base.is_dir():
            return
        for path in base.iterdir():
            parts = path.name.split(SCRATCH_SEP)
            if len(parts) != 3 or parts[:2] != [stage, project]:
                continue
            pid = parts[2].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                remove_tree(path, base)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def output_record(out: Any) -> bool:
    """True for {"file": a plain file name, "sha256": a digest, "size": bytes}."""
    return (
        isinstance(out, dict)
        and is_name(out.get("file"))
        and is_digest(out.get("sha256"))
        and isinstance(out.get("size"), int)
        and not isinstance(out.get("size"), bool)
    )
