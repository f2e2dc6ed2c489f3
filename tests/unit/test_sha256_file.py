"""sha256_file: the digest of a file's bytes, holes hashed as zeros without reading them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edibuild.store.fsutil import CHUNK, sha256_file


@pytest.mark.parametrize(
    "data", [b"", b"x", b"a" * CHUNK, b"a" * (CHUNK + 1), bytes(3 * CHUNK) + b"end"]
)
def test_the_digest_of_the_bytes_after_the_prefix(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, prefix=b"meta") == hashlib.sha256(b"meta" + data).hexdigest()


def test_a_sparse_file_hashes_as_its_bytes(tmp_path: Path) -> None:
    """Holes at the start, in the middle and at the end count as the zeros they read as."""
    path = tmp_path / "sparse"
    with path.open("wb") as f:
        f.truncate(5 * CHUNK + 7)
        f.seek(2 * CHUNK + 3)
        f.write(b"data")
        f.seek(4 * CHUNK)
        f.write(b"more" * 1000)
    assert path.stat().st_blocks * 512 < path.stat().st_size  # really sparse
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
