"""The artifact folder of one project: hard links to cache blobs, pointers, manifests, logs.

<artifacts>/<project>/<file>       hard links to the blobs: what users flash and ship
<artifacts>/<project>/.state/<stage>.json   the doit target: output digests only, so an
                                   identical rebuild leaves it unchanged (early cut-off)
<artifacts>/<project>/.state/<stage>.key    the input key of the installed outputs
<artifacts>/<project>/.state/<stage>.stat   size, mtime, inode and ctime of each installed
                                   file, so one written to in place is not up to date
<artifacts>/<project>/<stage>.manifest.json  everything about the build, for people
<artifacts>/<project>/log/<stage>.log       the full log of the last run
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edibuild.config.names import is_name
from edibuild.errors import UnsafePath
from edibuild.run import run
from edibuild.store.cache import Cache, Entry, Output, output_record
from edibuild.store.fsutil import (
    confined,
    partial_path,
    read_json,
    remove_file,
    sweep_partials,
    write_atomic,
    write_json,
)


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
        if not isinstance(records, dict) or not all(map(output_record, records.values())):
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
        """Size, mtime, inode and ctime of each installed output when it was installed."""
        return self.dir / ".state" / f"{stage}.stat"

    def intact(self, stage: str) -> bool:
        """True when every output the pointer names is present with its size, and not
        written to since it was installed (its mtime and inode, when recorded)."""
        return self._stamps_match(stage, WRITTEN, required=False)

    def unchanged(self, stage: str) -> bool:
        """True when no output was written to (nor relinked) since it was installed: its
        ctime, which every write moves and no program can set, is still the one recorded.
        Its bytes are then those its digest names, without reading them again."""
        return self._stamps_match(stage, STAMP_FIELDS, required=True)

    def _stamps_match(self, stage: str, fields: int, *, required: bool) -> bool:
        """True when every output is present with its size and the first `fields` fields
        of its recorded stamp (an output without one counts only when not `required`)."""
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
            if (required or out.file in recorded) and not _same(recorded.get(out.file), st, fields):
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


def _stamp(st: os.stat_result) -> list[int]:
    """What tells an installed file was written to: its size, mtime and inode (WRITTEN),
    then its ctime (moved by any write, and by a link made or removed elsewhere too)."""
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


# The stamp fields up-to-date checks compare: not the ctime, which trimming the cache (a
# removed link to the same blob) moves while the bytes stay.
WRITTEN = 3
STAMP_FIELDS = 4


def _same(recorded: object, st: os.stat_result, fields: int) -> bool:
    """True when a recorded stamp has the first `fields` fields of the file's stamp."""
    return isinstance(recorded, list) and recorded[:fields] == _stamp(st)[:fields]


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
