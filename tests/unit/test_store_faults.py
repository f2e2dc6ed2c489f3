"""The cache and the artifact folders under the paths only a fault takes: a rebuild of the
same bytes, a blob changed after it was stored, a move across file systems, a killed
writer's temporary files, an artifact written to in place."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edibuild.store.artifacts import ProjectArtifacts
from edibuild.store.cache import Cache
from edibuild.store.fsutil import partial_path, sha256_file, sweep_partials, write_json
from tests.conftest import require_root


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def output(cache: Cache, name: str, data: bytes) -> Path:
    """An output file as a build leaves it in its scratch space."""
    path = cache.scratch_root / "build" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.partial"))


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")


def test_installing_the_same_blob_again_leaves_no_temporary_link(
    tmp_path: Path, cache: Cache
) -> None:
    arts = ProjectArtifacts(tmp_path / "artifacts", "proj")
    entry = cache.store("export", "k" * 64, {"rootfs": output(cache, "r.tar", b"x" * 100)}, {})
    arts.install(cache, entry, {"stage": "export"})
    # A rerun with the same bytes (early cut-off) installs the very same blob again:
    # rename(2) of a hard link over another link of the same inode does nothing.
    again = cache.store("export", "j" * 64, {"rootfs": output(cache, "r.tar", b"x" * 100)}, {})
    arts.install(cache, again, {"stage": "export"})
    assert partials(arts.dir) == []
    assert os.path.samefile(arts.dir / "r.tar", cache.blob(again.outputs["rootfs"].sha256))
    assert arts.intact("export")


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_a_blob_changed_after_it_was_stored_is_removed_not_reused(
    tmp_path: Path, cache: Cache, keep_mtime: bool
) -> None:
    entry = cache.store("disk", "k" * 64, {"image": output(cache, "d.img", b"a" * 4096)}, {})
    blob = cache.blob(entry.outputs["image"].sha256)
    st = blob.stat()
    os.chmod(blob, 0o644)
    with blob.open("r+b") as f:  # same size: only the bytes say it changed
        f.seek(2048)
        f.write(b"b")
    if keep_mtime:  # a careful edit: the stat looks untouched
        os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.lookup("disk", "k" * 64) is None
    assert not blob.exists()
    assert not cache.entry_path("disk", "k" * 64).exists()


def test_a_rebuild_replaces_a_corrupted_blob_of_the_same_name(tmp_path: Path, cache: Cache) -> None:
    good = b"good bytes" * 100
    entry = cache.store("bmap", "k" * 64, {"bmap": output(cache, "x.bmap", good)}, {})
    blob = cache.blob(entry.outputs["bmap"].sha256)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"evil bytes" * 100)  # same size, wrong content under the good name
    again = cache.store("bmap", "j" * 64, {"bmap": output(cache, "x.bmap", good)}, {})
    assert blob.read_bytes() == good
    assert cache.lookup("bmap", "j" * 64) == again


def test_a_blob_from_scratch_on_another_file_system_is_copied_in_completely(
    tmp_path: Path, cache: Cache
) -> None:
    require_root()  # scratch space on a file system of its own: a tmpfs mounted there
    cache.scratch_root.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "edibuild-test", cache.scratch_root],
                   check=True)  # fmt: skip
    try:
        source = output(cache, "d.img", b"z" * 10000)
        entry = cache.store("disk", "k" * 64, {"image": source}, {})
        assert not source.exists()
    finally:
        subprocess.run(["umount", cache.scratch_root], check=True)
    blob = cache.blob(entry.outputs["image"].sha256)
    assert sha256_file(blob) == entry.outputs["image"].sha256
    assert partials(cache.root) == []


def test_a_touched_blob_that_holds_its_bytes_is_still_reused(tmp_path: Path, cache: Cache) -> None:
    entry = cache.store("disk", "k" * 64, {"image": output(cache, "d.img", b"a" * 4096)}, {})
    os.utime(cache.blob(entry.outputs["image"].sha256), (1, 1))
    assert cache.peek("disk", "k" * 64) is None  # the cheap check doubts it
    assert cache.lookup("disk", "k" * 64) == entry  # the hash clears it
    assert cache.peek("disk", "k" * 64) == entry  # and it is recorded anew


def test_an_artifact_written_to_in_place_is_not_up_to_date(tmp_path: Path, cache: Cache) -> None:
    arts = ProjectArtifacts(tmp_path / "artifacts", "proj")
    entry = cache.store("disk", "k" * 64, {"image": output(cache, "p.img", b"a" * 4096)}, {})
    arts.install(cache, entry, {"stage": "disk"})
    assert arts.intact("disk")
    image = arts.dir / "p.img"
    os.chmod(image, 0o644)
    with image.open("r+b") as f:  # qemu booting the image without snapshot, say
        f.write(b"b")
    assert not arts.intact("disk")
    assert cache.lookup("disk", "k" * 64) is None  # the blob is that same file


def test_an_artifact_untouched_since_install_is_not_hashed_again(
    tmp_path: Path, cache: Cache
) -> None:
    """Its recorded ctime says nothing wrote to it; a write with the mtime put back, or a
    new link to the blob, moves the ctime (then a build hashes it); up-to-date checks keep
    ignoring the ctime (trimming the cache removes a link and changes no byte)."""
    arts = ProjectArtifacts(tmp_path / "artifacts", "proj")
    entry = cache.store("disk", "k" * 64, {"image": output(cache, "p.img", b"a" * 4096)}, {})
    arts.install(cache, entry, {"stage": "disk"})
    assert arts.unchanged("disk") and arts.intact("disk")
    image = arts.dir / "p.img"
    os.link(image, tmp_path / "another-link")
    assert not arts.unchanged("disk") and arts.intact("disk")
    arts.install(cache, entry, {"stage": "disk"})
    st = image.stat()
    os.chmod(image, 0o644)
    with image.open("r+b") as f:
        f.write(b"b")
    os.chmod(image, st.st_mode)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not arts.unchanged("disk")
    (arts.stat_file("disk")).write_text('{"p.img": 7}')  # a tampered stamp file
    assert not arts.unchanged("disk") and not arts.intact("disk")


def test_temporary_files_of_ended_writers_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    dead = folder / f".x.json.{dead_pid()}-3@{os.uname().nodename}.partial"
    old_style = folder / f".y.json.{dead_pid()}.partial"
    other_host = folder / f".z.json.{dead_pid()}-1@another-machine.partial"
    live = partial_path(folder / "w.json")
    for path in (dead, old_style, other_host, live):
        path.write_text("half")
    assert sorted(sweep_partials(folder, tmp_path)) == sorted([dead, old_style])
    assert other_host.exists() and live.exists()


def test_two_threads_never_share_a_temporary_name(tmp_path: Path) -> None:
    names = {partial_path(tmp_path / "a.json").name for _ in range(100)}
    assert len(names) == 100
    write_json(tmp_path / "a.json", {"ok": True})
    assert partials(tmp_path) == []


def test_stale_scratch_of_an_ended_build_goes_before_a_cache_hit(
    tmp_path: Path, cache: Cache
) -> None:
    host = os.uname().nodename
    left = cache.scratch_root / f"export+proj+{dead_pid()}-0@{host}"
    (left / "out").mkdir(parents=True)
    remote = cache.scratch_root / f"export+proj+{dead_pid()}-0@another-machine"
    remote.mkdir()
    other = cache.scratch_root / f"configure+proj+{dead_pid()}-0"
    other.mkdir()
    assert cache.remove_stale_scratch("export", "proj") == [left]
    assert not left.exists() and remote.exists() and other.exists()
