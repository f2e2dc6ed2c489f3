"""The content-addressed artifact store and the per-project artifact directories.

Layout (principle 3 of the design: content addressed):
  <cache>/blobs/ab/<sha256>          immutable outputs, named by their content
  <cache>/keys/<stage>/<key>.json    input key -> output digests and info (action cache)
  <cache>/tmp/<stage>+<project>+<pid>-<n>/   scratch space of running builds ('+' is in
                                     no name, so a stage's leftovers are told apart exactly)
  <artifacts>/<project>/<file>       hard links to the blobs: what users flash and ship
  <artifacts>/<project>/.state/<stage>.json   the doit target: output digests only, so an
                                     identical rebuild leaves it unchanged (early cut-off)
  <artifacts>/<project>/.state/<stage>.key    the input key of the installed outputs
  <artifacts>/<project>/<stage>.manifest.json  everything about the build, for people
  <artifacts>/<project>/log/<stage>.log       the full log of the last run
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

from edibuild.errors import UnsafePath
from edibuild.fsutil import (
    confined,
    read_json,
    remove_file,
    remove_tree,
    sha256_file,
    write_atomic,
    write_json,
)
from edibuild.names import is_name
from edibuild.project import Json
from edibuild.run import run, say

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
            if not _output_record(out) or not isinstance(out.get("mtime_ns"), int):
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

    def intact(self, stage: str) -> bool:
        """True when every output the pointer names is present with its size."""
        outputs = self.outputs(stage)
        if outputs is None:
            return False
        for out in outputs.values():
            try:
                if (self.dir / out.file).stat().st_size != out.size:
                    return False
            except OSError:
                return False
        return True

    def install(self, cache: Cache, entry: Entry, manifest: Mapping[str, Any]) -> None:
        """Link an entry's blobs into place; the pointer is removed first and written last."""
        old = self.checked_outputs(entry.stage) or {}
        for out in entry.outputs.values():
            confined(self.dir / out.file, self.dir)
        remove_file(self.pointer(entry.stage), self.dir)
        for out in entry.outputs.values():
            _link(cache.blob(out.sha256), self.dir / out.file, self.dir)
        keep = {o.file for o in entry.outputs.values()}
        for out in old.values():
            if out.file not in keep:
                remove_file(self.dir / out.file, self.dir)
        write_json(confined(self.manifest(entry.stage), self.dir), manifest)
        write_atomic(confined(self.key_file(entry.stage), self.dir), (entry.key + "\n").encode())
        pointer = {
            "stage": entry.stage,
            "outputs": {n: o.as_json() for n, o in sorted(entry.outputs.items())},
        }
        write_json(confined(self.pointer(entry.stage), self.dir), pointer)

    def removable(self, stage: str) -> list[Path]:
        """What `remove` would delete: outputs, pointer, key, manifest and log (checked)."""
        paths = [self.dir / o.file for o in (self.checked_outputs(stage) or {}).values()]
        paths += [self.pointer(stage), self.key_file(stage), self.manifest(stage), self.log(stage)]
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


def _link(blob: Path, dest: Path, root: Path) -> None:
    """Put a blob at dest atomically: a hard link, or a sparse copy across file systems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    remove_file(tmp, root)
    try:
        os.link(blob, tmp)
    except OSError:
        run(["cp", "--reflink=auto", "--sparse=always", blob, tmp])
    os.replace(tmp, dest)
