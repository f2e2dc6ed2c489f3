"""The content-addressed artifact store and the per-project artifact directories.

Layout (principle 3 of the design: content addressed):
  <cache>/blobs/ab/<sha256>          immutable outputs, named by their content
  <cache>/keys/<stage>/<key>.json    input key -> output digests and info (action cache)
  <cache>/tmp/<stage>+<project>+<pid>-<n>@<host>/   scratch space of running builds ('+'
                                     is in no name, so a stage's leftovers are told apart
                                     exactly; the host, as the cache may be shared)
  <artifacts>/<project>/<file>       hard links to the blobs: what users flash and ship
  <artifacts>/<project>/.state/<stage>.json   the doit target: output digests only, so an
                                     identical rebuild leaves it unchanged (early cut-off)
  <artifacts>/<project>/.state/<stage>.key    the input key of the installed outputs
  <artifacts>/<project>/.state/<stage>.stat   size, mtime and inode of each installed
                                     file, so one written to in place is not up to date
  <artifacts>/<project>/<stage>.manifest.json  everything about the build, for people
  <artifacts>/<project>/log/<stage>.log       the full log of the last run

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

from edibuild.errors import UnsafePath
from edibuild.fsutil import (
    confined,
    partial_path,
    read_json,
    remove_file,
    remove_tree,
    sha256_file,
    sweep_partials,
    write_atomic,
    write_json,
)
from edibuild.names import is_name
from edibuild.orphans import alive
from edibuild.project import Json
from edibuild.run import run, say

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
            if not _output_record(out) or not isinstance(out.get("mtime_ns"), int):
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


class ProjectArtifacts:
    """The artifact directory of one project: links to blobs, pointers, manifests, logs."""

    def __init__(self, root: Path, project: str) -> None:
        if not is_name(project):  # project names are checked at load; this is the last line
            raise UnsafePath(f"{project!r} is not a project name: no folder of {root}")
        self.dir = root / project

    def pointer(self, stage: str) -> Path:
        """The doit target of a stage: its output digests."""
        return self.dir / ".state" / f"{stage}.json"

    def key_file(self, stage: str) -> Path:
        """The input key of the stage's installed outputs."""
        return self.dir / ".state" / f"{stage}.key"

    def manifest(self, stage: str) -> Path:
        """The human-readable manifest of the stage's last build."""
        return self.dir / f"{stage}.manifest.json"

    def log(self, stage: str) -> Path:
        """The log of the stage's last run."""
        return self.dir / "log" / f"{stage}.log"

    def outputs(self, stage: str) -> dict[str, Output] | None:
        """The installed outputs of a stage; None if it has none or a pointer edibuild
        did not write (for deciding what to build; deleting uses `checked_outputs`)."""
        try:
            return self.checked_outputs(stage)
        except UnsafePath:
            return None

    def checked_outputs(self, stage: str) -> dict[str, Output] | None:
        """The installed outputs of a stage, or None; UnsafePath for a pointer naming
        anything but plain files of this folder (it was edited: never acted upon)."""
        pointer = self.pointer(stage)
        data = read_json(pointer)
        if data is None:
            return None
        records = data.get("outputs") if isinstance(data, dict) else None
        if not isinstance(records, dict) or not all(map(_output_record, records.values())):
            raise UnsafePath(
                f"{pointer} is not a pointer edibuild wrote: it must name plain files of "
                f"{self.dir} with their sha256 and size",
                hint="it was edited by hand or by another tool: check the files it names, "
                "then delete it (the stage then runs again)",
            )
        return {n: Output(o["file"], o["sha256"], o["size"]) for n, o in records.items()}

    def installed_key(self, stage: str) -> str | None:
        """The input key of the installed outputs, if any."""
        try:
            return self.key_file(stage).read_text().strip() or None
        except OSError:
            return None

    def stat_file(self, stage: str) -> Path:
        """Size, mtime and inode of each installed output when it was installed."""
        return self.dir / ".state" / f"{stage}.stat"

    def intact(self, stage: str) -> bool:
        """True when every output the pointer names is present with its size, and not
        written to since it was installed (its mtime and inode, when recorded)."""
        outputs = self.outputs(stage)
        if outputs is None:
            return False
        recorded = read_json(self.stat_file(stage))
        recorded = recorded if isinstance(recorded, dict) else {}
        for out in outputs.values():
            try:
                st = (self.dir / out.file).stat()
            except OSError:
                return False
            if st.st_size != out.size:
                return False
            if out.file in recorded and recorded[out.file] != _stamp(st):
                return False
        return True

    def install(self, cache: Cache, entry: Entry, manifest: Mapping[str, Any]) -> None:
        """Link an entry's blobs into place; the pointer is removed first and written last."""
        old = self.checked_outputs(entry.stage) or {}
        for out in entry.outputs.values():
            confined(self.dir / out.file, self.dir)
        remove_file(self.pointer(entry.stage), self.dir)
        for folder in (self.dir, self.dir / ".state"):
            sweep_partials(folder, self.dir)
        stamps = {}
        for out in entry.outputs.values():
            dest = self.dir / out.file
            _link(cache.blob(out.sha256), dest, self.dir)
            stamps[out.file] = _stamp(dest.stat())
        keep = {o.file for o in entry.outputs.values()}
        for out in old.values():
            if out.file not in keep:
                remove_file(self.dir / out.file, self.dir)
        write_json(confined(self.manifest(entry.stage), self.dir), manifest)
        write_atomic(confined(self.key_file(entry.stage), self.dir), (entry.key + "\n").encode())
        write_json(confined(self.stat_file(entry.stage), self.dir), stamps)
        pointer = {
            "stage": entry.stage,
            "outputs": {n: o.as_json() for n, o in sorted(entry.outputs.items())},
        }
        write_json(confined(self.pointer(entry.stage), self.dir), pointer)

    def removable(self, stage: str) -> list[Path]:
        """What `remove` would delete: outputs, pointer, key, stat, manifest, log (checked)."""
        paths = [self.dir / o.file for o in (self.checked_outputs(stage) or {}).values()]
        paths += [self.pointer(stage), self.key_file(stage), self.stat_file(stage)]
        paths += [self.manifest(stage), self.log(stage)]
        for path in paths:
            confined(path, self.dir)
        return paths

    def remove(self, stage: str) -> list[Path]:
        """Remove a stage's installed outputs, pointer, key, manifest and log."""
        paths = self.removable(stage)  # every path is checked before the first goes
        return [path for path in paths if remove_file(path, self.dir)]


def _output_record(out: Any) -> bool:
    """True for {"file": a plain file name, "sha256": a digest, "size": bytes}."""
    return (
        isinstance(out, dict)
        and is_name(out.get("file"))
        and is_digest(out.get("sha256"))
        and isinstance(out.get("size"), int)
        and not isinstance(out.get("size"), bool)
    )


def _stamp(st: os.stat_result) -> list[int]:
    """What tells an installed file was written to: its size, mtime and inode."""
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _holds(blob: Path, digest: str, size: int) -> bool:
    """True when the blob exists with this size and digest (a rebuild of the same bytes)."""
    try:
        if blob.stat().st_size != size:
            return False
    except FileNotFoundError:
        return False
    return sha256_file(blob) == digest


def _link(blob: Path, dest: Path, root: Path) -> None:
    """Put a blob at dest atomically: a hard link, or a sparse copy across file systems.

    A dest that already is this blob (a rebuild of the same bytes) is left alone:
    rename(2) of one hard link over another of the same inode does nothing and
    succeeds, which left the temporary name behind, pinning the blob.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if os.path.samestat(blob.stat(), dest.stat()):
            return
    tmp = partial_path(dest)
    try:
        try:
            os.link(blob, tmp)
        except OSError:
            run(["cp", "--reflink=auto", "--sparse=always", blob, tmp])
        os.replace(tmp, dest)
    finally:
        remove_file(tmp, root)
