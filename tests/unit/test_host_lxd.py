"""Unit tests for edibuild.host.lxd_service: the daemon host setup finds, preseed, hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from edibuild.errors import EdibuildError
from edibuild.host import lxd_service
from edibuild.lxd.endpoints import Endpoint, local_candidates
from tests.fake_lxd import serving, stale_socket


def test_find_running_skips_stale_and_missing_sockets(short_tmp: Path) -> None:
    daemons = local_candidates({}, root=short_tmp)
    stale_socket(daemons[0].socket)  # Debian's: a leftover, nothing listens
    with serving(daemons[1].socket, {"/1.0": {"api_version": "1.0"}}):
        assert lxd_service.find_running(daemons) == daemons[1]  # the snap's
    assert lxd_service.find_running(daemons) is None


def test_initialised_daemon_is_left_alone(short_tmp: Path) -> None:
    routes = {"/1.0/storage-pools": ["/1.0/storage-pools/fast"]}
    with serving(short_tmp / "unix.socket", routes):
        daemon = Endpoint.local(short_tmp / "unix.socket", "lxd", "test")
        # Nothing is run: with a pool present, it returns before calling `lxd init`.
        assert lxd_service.ensure_initialised(daemon, short_tmp / "log") is False
        assert not (short_tmp / "log").exists()


def test_preseed_adds_root_disk_only_when_missing() -> None:
    bare = lxd_service.preseed_for({})
    assert bare["storage_pools"] == [{"name": "default", "driver": "dir"}]
    root = bare["profiles"][0]["devices"]["root"]
    assert root == {"type": "disk", "path": "/", "pool": "default"}
    assert "networks" not in bare  # never a bridge: private subnets are forbidden here
    with_root = lxd_service.preseed_for({"rootfs": {"type": "disk", "path": "/", "pool": "x"}})
    assert "profiles" not in with_root


def test_nothing_installed_says_how_to_install(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if Path("/snap/bin/lxd").exists():
        pytest.skip("the LXD snap is installed here")
    monkeypatch.setenv("PATH", str(short_tmp))  # no lxd, no incus
    daemons = local_candidates({}, root=short_tmp)
    with pytest.raises(EdibuildError) as info:
        lxd_service.ensure_lxd(short_tmp, daemons)
    assert "no LXD or Incus found" in str(info.value)
    hint = info.value.hint or ""
    assert "apt-get install lxd" in hint and "lxd init" in hint and "lxd --group root" in hint


_DIR_ROOT = {"root": {"type": "disk", "path": "/", "pool": "default"}}
_BTRFS_KERNEL = "nodev\tsysfs\nnodev\ttmpfs\n\tbtrfs\n\text4\n"


@pytest.mark.parametrize(
    ("pools", "devices", "filesystems", "env", "wanted"),
    [
        ([{"name": "default", "driver": "dir"}], _DIR_ROOT, _BTRFS_KERNEL, {}, True),
        (
            [{"name": "default", "driver": "dir"}, {"name": "edibuild", "driver": "btrfs"}],
            _DIR_ROOT,
            _BTRFS_KERNEL,
            {},
            False,
        ),
        ([{"name": "default", "driver": "zfs"}], _DIR_ROOT, _BTRFS_KERNEL, {}, False),
        ([{"name": "default", "driver": "dir"}], _DIR_ROOT, "nodev\tsysfs\n\text4\n", {}, False),
        (
            [{"name": "default", "driver": "dir"}],
            _DIR_ROOT,
            _BTRFS_KERNEL,
            {"EDIBUILD_BUILD_POOL": "none"},
            False,
        ),
        ([{"name": "default", "driver": "dir"}], {}, _BTRFS_KERNEL, {}, False),
    ],
    ids=["dir-root", "already-there", "zfs-root", "no-btrfs", "opted-out", "no-root-disk"],
)
def test_build_pool_is_added_only_over_a_dir_pool(
    pools: list[dict[str, str]],
    devices: dict[str, dict[str, str]],
    filesystems: str,
    env: dict[str, str],
    wanted: bool,
) -> None:
    """The btrfs pool comes only where it helps (a dir root), once, and never when opted out."""
    assert lxd_service.wants_build_pool(pools, devices, filesystems, env) is wanted
