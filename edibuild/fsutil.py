"""Small file-system primitives: atomic writes, digests, mount-aware removal."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edibuild.run import run

CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    """Return the sha256 hex digest of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(data: Any) -> str:
    """Serialise data the same way every time (sorted keys, no spaces)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def digest_json(data: Any) -> str:
    """Return the sha256 of the canonical JSON form of `data`."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes under a temporary name, fsync, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, pretty-printed for people."""
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    """Read a JSON file; None when it is missing or unreadable (a half-written file)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def unlink(path: Path) -> None:
    """Remove a file if it exists."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def mounts_below(path: Path) -> list[Path]:
    """Return mount points at or below `path`, deepest first."""
    found: list[Path] = []
    prefix = os.fspath(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """Unmount anything below `path`, then delete it without crossing file systems."""
    if not path.exists() and not path.is_symlink():
        return
    for point in mounts_below(path):
        run(["umount", "--lazy", point], check=False)
    run(["rm", "-rf", "--one-file-system", "--", path])
