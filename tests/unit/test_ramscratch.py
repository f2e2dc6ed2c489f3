"""Scratch in memory for unpacked trees: used only when it fits, always removed after."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edibuild.store import ramscratch


def env_for(tmp_path: Path) -> dict[str, str]:
    return {ramscratch.ENV: str(tmp_path)}


def test_off_means_disk(tmp_path: Path) -> None:
    fallback = tmp_path / "work" / "rootfs"
    with ramscratch.tree_dir(fallback, 1, {ramscratch.ENV: "off"}) as tree:
        assert tree == fallback and tree.is_dir()
    assert not (tmp_path / f"edibuild-{os.geteuid()}").exists()


def test_a_tree_that_fits_goes_to_the_private_folder_and_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ramscratch, "_available_memory", lambda: 64 * 2**30)
    fallback = tmp_path / "work" / "rootfs"
    with ramscratch.tree_dir(fallback, 2**20, env_for(tmp_path)) as tree:
        assert tree.parent == tmp_path / f"edibuild-{os.geteuid()}"
        assert tree.parent.stat().st_mode & 0o777 == 0o700
        (tree / "etc").mkdir()
        (tree / "etc" / "hostname").write_text("x")
    assert not tree.exists() and not fallback.exists()


def test_the_tree_in_memory_is_removed_when_the_build_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ramscratch, "_available_memory", lambda: 64 * 2**30)
    with (
        pytest.raises(RuntimeError),
        ramscratch.tree_dir(tmp_path / "f", 1, env_for(tmp_path)) as tree,
    ):
        (tree / "file").write_text("half")
        raise RuntimeError("unpack failed")
    assert not tree.exists()


def test_short_memory_falls_back_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ramscratch, "_available_memory", lambda: ramscratch.MEMORY_RESERVE)
    fallback = tmp_path / "work" / "rootfs"
    with ramscratch.tree_dir(fallback, 2**20, env_for(tmp_path)) as tree:
        assert tree == fallback


def test_a_tree_larger_than_the_tmpfs_falls_back_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ramscratch, "_available_memory", lambda: 2**62)
    fallback = tmp_path / "work" / "rootfs"
    need = 2 * os.statvfs(tmp_path).f_blocks * os.statvfs(tmp_path).f_frsize
    with ramscratch.tree_dir(fallback, need, env_for(tmp_path)) as tree:
        assert tree == fallback


@pytest.mark.parametrize("kind", ["link", "open"])
def test_a_private_folder_that_is_not_private_is_not_used(tmp_path: Path, kind: str) -> None:
    root = tmp_path / f"edibuild-{os.geteuid()}"
    if kind == "link":
        (tmp_path / "elsewhere").mkdir()
        root.symlink_to(tmp_path / "elsewhere")
    else:
        root.mkdir(mode=0o755)
        root.chmod(0o755)
    assert ramscratch.private_root(env_for(tmp_path)) is None


def test_a_missing_tmpfs_means_disk(tmp_path: Path) -> None:
    assert ramscratch.private_root({ramscratch.ENV: str(tmp_path / "none")}) is None


def test_what_killed_builds_left_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ramscratch, "_available_memory", lambda: 64 * 2**30)
    root = ramscratch.private_root(env_for(tmp_path))
    assert root is not None
    dead = root / "999999999-0"  # no such process
    (dead / "usr").mkdir(parents=True)
    alive = root / f"{os.getppid()}-0"
    alive.mkdir()
    with ramscratch.tree_dir(tmp_path / "f", 1, env_for(tmp_path)):
        pass
    assert not dead.exists() and alive.exists()


def test_available_memory_is_read() -> None:
    assert ramscratch._available_memory() > 0


def test_the_guess_of_an_unpacked_tree_is_generous(tmp_path: Path) -> None:
    archive = tmp_path / "rootfs.tar.zst"
    archive.write_bytes(b"x" * 2**20)
    assert ramscratch.unpacked_size(archive) == 4 * 2**20 + 256 * 2**20
