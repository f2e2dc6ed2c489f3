"""The content-addressed cache: immutable blobs, input-key entries, locks and scratch space.

Layout (principle 3 of the design: content addressed):
  <cache>/blobs/ab/<sha256>          immutable outputs, named by their content
  <cache>/keys/<stage>/<key>.json    input key -> output digests and info (action cache)
  <cache>/tmp/<stage>+<project>+<pid>-<n>@<host>/   scratch space of running builds ('+'
                                     is in no name, so a stage's leftovers are told apart
                                     exactly; the host, as the cache may be shared)
The artifact folders that link to the blobs are store/artifacts.py.

Reuse is verified: a cache hit hashes every blob it installs (sha256 runs at about
1.7 GB/s here, a second per GB, against minutes to rebuild), so a blob whose bytes
changed after it was stored (written through a hard link in an artifact folder, a
failing disk, a hand edit that kept the mtime) is removed and its stage builds again;
it never reaches an image. A size or mtime that differs from the entry's record is
caught before hashing, and a rebuild that meets a blob of the same name hashes that
blob before keeping it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edibuild.config.names import is_name
from edibuild.data import Json
from edibuild.errors import UnsafePath
from edibuild.orphans import alive
from edibuild.run import run, say
from edibuild.store.fsutil import (
    confined,
    partial_path,
    read_json,
    remove_file,
    remove_tree,
    sha256_file,
    sweep_partials,
    write_json,
)

_counter = itertools.count()
_DIGEST = re.compile(r"[0-9a-f]{64}")
SCRATCH_SEP = "+"
HOST = socket.gethostname()


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
        """Like `lookup`, but only reading: for explanations, which must change nothing.

        Trusts a blob whose size and mtime are those recorded (no hashing).
        """
        return self._read(stage, key, stamps=True)

    def _read(self, stage: str, key: str, *, stamps: bool) -> Entry | None:
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
            if st.st_size != out["size"] or (stamps and st.st_mtime_ns != out["mtime_ns"]):
                return None
            outputs[name] = Output(out["file"], out["sha256"], out["size"])
        return Entry(stage, key, outputs, data.get("info"))

    def lookup(self, stage: str, key: str) -> Entry | None:
        """Return the entry if every blob is present and has its digest, marking it used.

        Every blob is hashed (see the module's docstring): one whose bytes no longer
        match its name is removed (what still links it holds the same wrong bytes) and
        the entry forgotten, so the stage builds again. An entry whose blob is gone is
        forgotten too. A blob that was touched but holds its bytes is recorded anew.
        """
        entry = self._read(stage, key, stamps=False)
        if entry is None:
            self.forget(stage, key)
            return None
        for out in entry.outputs.values():
            blob = self.blob(out.sha256)
            if sha256_file(blob) != out.sha256:
                say(
                    f"{stage}: the cache blob {blob} was changed after it was stored; "
                    "it is removed and the stage builds again"
                )
                remove_file(blob, self.root)
                self.forget(stage, key)
                return None
        if self.peek(stage, key) is None:
            self._restamp(stage, key)
        with contextlib.suppress(OSError):
            os.utime(self.entry_path(stage, key))  # least recently used, for trimming
        return entry

    def _restamp(self, stage: str, key: str) -> None:
        """Record the blobs' mtimes again (after a hash proved their bytes unchanged)."""
        path = self.entry_path(stage, key)
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("outputs"), dict):
            for out in data["outputs"].values():
                out["mtime_ns"] = self.blob(out["sha256"]).stat().st_mtime_ns
            write_json(path, data)

    def store(self, stage: str, key: str, files: Mapping[str, Path], info: Json) -> Entry:
        """Move finished output files into blobs and record the entry (entry last)."""
        outputs: dict[str, Any] = {}
        for name, path in files.items():
            digest = sha256_file(path)
            blob = self.blob(digest)
            blob.parent.mkdir(parents=True, exist_ok=True)
            sweep_partials(blob.parent, self.root)
            if _holds(blob, digest, path.stat().st_size):
                remove_file(path, self.root)
            else:
                self._put(path, blob)
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
        entry_path = self.entry_path(stage, key)
        write_json(entry_path, record)
        sweep_partials(entry_path.parent, self.root)
        entry = self.peek(stage, key)  # just hashed: no second pass over the bytes
        assert entry is not None
        return entry

    def _put(self, path: Path, blob: Path) -> None:
        """Move a file to its blob name; across file systems, copy it in under a temporary
        name first (a blob is complete or absent, never half-written)."""
        os.chmod(path, 0o444)
        try:
            os.replace(path, blob)
            return
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
        tmp = partial_path(blob)
        try:
            run(["cp", "--reflink=auto", "--sparse=always", path, tmp])
            os.chmod(tmp, 0o444)
            os.replace(tmp, blob)
        finally:
            remove_file(tmp, self.root)
        remove_file(path, self.root)

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
        owner = f"{os.getpid()}-{next(_counter)}@{HOST}"
        path = base / SCRATCH_SEP.join((stage, project, owner))
        confined(path, base)
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            remove_tree(path, base)

    def remove_stale_scratch(self, stage: str, project: str) -> list[Path]:
        """Remove scratch left by a killed build of the same stage and project (this host's)."""
        base = self.scratch_root
        if not base.is_dir():
            return []
        removed = []
        for path in base.iterdir():
            parts = path.name.split(SCRATCH_SEP)
            if len(parts) != 3 or parts[:2] != [stage, project]:
                continue
            owner, _, host = parts[2].partition("@")
            pid = owner.split("-")[0]
            if host in ("", HOST) and pid.isdigit() and not alive(int(pid)):
                remove_tree(path, base)
                removed.append(path)
        return removed


def output_record(out: Any) -> bool:
    """True for {"file": a plain file name, "sha256": a digest, "size": bytes}."""
    return (
        isinstance(out, dict)
        and is_name(out.get("file"))
        and is_digest(out.get("sha256"))
        and isinstance(out.get("size"), int)
        and not isinstance(out.get("size"), bool)
    )


def _holds(blob: Path, digest: str, size: int) -> bool:
    """True when the blob exists with this size and digest (a rebuild of the same bytes)."""
    try:
        if blob.stat().st_size != size:
            return False
    except FileNotFoundError:
        return False
    return sha256_file(blob) == digest
