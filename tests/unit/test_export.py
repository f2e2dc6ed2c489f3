"""Export stage, pure parts: the scrub of per-build state and the tar command lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edibuild.image.reproducible import ExportSettings
from stages import export


def _touch(root: Path, rel: str, text: str = "x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small root file system with per-build state and things that must survive."""
    root = tmp_path / "rootfs"
    for rel in (
        "tmp/build.tmp",
        "run/lock/x",
        "var/log/dpkg.log",
        "var/log/apt/history.log",
        "var/log/journal/330b758b7e8e41b9bf10f3a712a57b97/system.journal",
        "var/cache/ldconfig/aux-cache",
        "var/cache/man/index.db",
        "var/cache/apt/pkgcache.bin",
        "var/lib/apt/lists/deb.debian.org_InRelease",
        "var/lib/systemd/random-seed",
        "var/lib/systemd/credential.secret",
        "var/lib/dbus/machine-id",
        "var/lib/dpkg/status-old",
        "etc/apt/apt.conf.d/00edibuild-proxy",
    ):
        _touch(root, rel)
    _touch(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    for rel in ("etc/ld.so.cache", "var/lib/dpkg/status", "var/cache/debconf/config.dat"):
        _touch(root, rel, "keep")
    return root


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def test_scrub_removes_per_build_state_and_keeps_what_the_image_needs(tree: Path) -> None:
    """Only the needed files stay; machine-id is empty and read-only."""
    export.scrub(tree)
    assert _files(tree) == {
        "etc/ld.so.cache",
        "etc/machine-id",
        "var/lib/dpkg/status",
        "var/cache/debconf/config.dat",
    }
    assert (tree / "etc/machine-id").read_bytes() == b""
    assert (tree / "etc/machine-id").stat().st_mode & 0o777 == 0o444


def test_scrub_keeps_the_directories_services_expect(tree: Path) -> None:
    """/var/log/journal, /var/log/apt and /var/cache/man stay (empty); the journal of the
    build container, named by its machine id, goes."""
    export.scrub(tree)
    for rel in ("var/log/journal", "var/log/apt", "var/cache/man", "tmp", "run"):
        assert (tree / rel).is_dir(), rel
    assert list((tree / "var/log/journal").iterdir()) == []
    assert list((tree / "run").iterdir()) == []


def test_scrub_never_follows_a_symlink_out_of_the_tree(tmp_path: Path) -> None:
    """An absolute symlink in the tree points at the host: nothing there is touched."""
    host = tmp_path / "host-var-cache"
    precious = _touch(host, "ldconfig/aux-cache", "host's")
    man = _touch(host, "man/index.db", "host's")
    root = tmp_path / "rootfs"
    for rel in ("var", "etc"):
        (root / rel).mkdir(parents=True)
    os.symlink(host, root / "var" / "cache")
    export.scrub(root)
    assert precious.read_text() == "host's"
    assert man.read_text() == "host's"


def test_inside_tells_paths_that_stay_in_the_tree(tmp_path: Path) -> None:
    """A relative link inside the tree is fine; one that leads out is refused."""
    root = tmp_path / "rootfs"
    (root / "var" / "run-real").mkdir(parents=True)
    os.symlink("run-real", root / "var" / "run")
    os.symlink("/", root / "var" / "out")
    assert export.inside(root, "var/run/x") == root / "var/run/x"
    assert export.inside(root, "var/out/etc/passwd") is None


def test_tar_command_is_reproducible(tmp_path: Path) -> None:
    """Sorted names, numeric owners, clamped mtimes, no atime/ctime, no pid in names."""
    argv = export.tar_command(tmp_path / "t", tmp_path / "o.tar", 1704067200)
    for flag in ("--sort=name", "--numeric-owner", "--mtime=@1704067200", "--clamp-mtime"):
        assert flag in argv
    pax = next(a for a in argv if a.startswith("--pax-option="))
    assert "delete=atime" in pax and "delete=ctime" in pax and "%p" not in pax


def test_unpack_command_takes_the_rootfs_of_the_lxd_tarball(tmp_path: Path) -> None:
    """Only rootfs/ is unpacked, its prefix stripped, owners and xattrs kept."""
    argv = export.unpack_command(tmp_path / "c.tar.zst", tmp_path / "tree")
    assert argv[-1] == "rootfs" and "--strip-components=1" in argv
    assert "--numeric-owner" in argv and "--xattrs" in argv and "--same-permissions" in argv


def test_config_names_the_scrub_and_the_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change of the scrub lists or of SOURCE_DATE_EPOCH changes export's key."""

    class _Project:
        export = ExportSettings()  # no epoch of its own

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    config = export.STAGE.config(_Project())  # type: ignore[arg-type]
    assert isinstance(config, dict)
    assert config["source_date_epoch"] == 1700000000
    assert "var/cache/ldconfig/aux-cache" in config["dropped"]
    assert "var/log/journal" in config["emptied"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000001")
    assert export.STAGE.config(_Project()) != config  # type: ignore[arg-type]


def test_tar_command_compresses_as_it_writes(tmp_path: Path) -> None:
    """With a compressor, tar pipes through it: no uncompressed copy of the rootfs on disk."""
    argv = export.tar_command(tmp_path / "t", tmp_path / "o.tar.zst", 1704067200, "zstd -3")
    assert "--use-compress-program=zstd -3" in argv
    assert argv.index("--use-compress-program=zstd -3") < argv.index(f"--file={tmp_path}/o.tar.zst")
