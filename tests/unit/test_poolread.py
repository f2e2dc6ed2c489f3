"""edibuild/lxd/poolread.py: the id map read from LXD's config, the tar command, the
metadata member that starts LXD's unified tarball."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from edibuild.lxd import poolread
from edibuild.lxd.poolread import IdRange, LocalFolder

SHIFTED = [
    {"Isuid": True, "Isgid": False, "Hostid": 100000, "Nsid": 0, "Maprange": 65536},
    {"Isuid": False, "Isgid": True, "Hostid": 100000, "Nsid": 0, "Maprange": 65536},
]


def config(entries: object) -> dict[str, str]:
    return {poolread.IDMAP_KEY: json.dumps(entries)}


def test_one_uid_and_one_gid_range_are_read() -> None:
    assert poolread.id_ranges(config(SHIFTED), privileged=False) == (
        IdRange(100000, 0, 65536),
        IdRange(100000, 0, 65536),
    )


def test_an_entry_for_both_kinds_counts_for_each() -> None:
    both = [{"Isuid": True, "Isgid": True, "Hostid": 1000000, "Nsid": 0, "Maprange": 10}]
    assert poolread.id_ranges(config(both), privileged=False) == (
        IdRange(1000000, 0, 10),
        IdRange(1000000, 0, 10),
    )


def test_privileged_without_a_map_reads_owners_as_they_are() -> None:
    assert poolread.id_ranges(config([]), privileged=True) == (None, None)


@pytest.mark.parametrize(
    "value",
    [
        None,  # never started: no map recorded, so owners cannot be known
        [],  # unprivileged, yet no map
        [*SHIFTED, {**SHIFTED[0], "Nsid": 70000}],  # two uid ranges
        [{**SHIFTED[0], "Hostid": -1}, SHIFTED[1]],
        [{**SHIFTED[0], "Maprange": 0}, SHIFTED[1]],
        [{**SHIFTED[0], "Hostid": "100000"}, SHIFTED[1]],
        [{**SHIFTED[0], "Hostid": True}, SHIFTED[1]],
        [{"Isuid": True}],
        {"not": "a list"},
        ["text"],
    ],
)
def test_a_missing_or_odd_map_means_publish_instead(value: object) -> None:
    cfg = {} if value is None else config(value)
    assert poolread.id_ranges(cfg, privileged=False) is None


def test_unreadable_json_means_publish_instead() -> None:
    assert poolread.id_ranges({poolread.IDMAP_KEY: "[{"}, privileged=False) is None


def test_the_tar_runs_in_a_user_namespace_with_the_containers_map() -> None:
    folder = LocalFolder(
        Path("/pool/containers/c"), IdRange(100000, 0, 65536), IdRange(200000, 0, 9)
    )
    argv = poolread.tar_argv(folder, "zstd -q")
    assert argv[:7] == [
        "unshare", "--user", "--map-users=100000,0,65536", "--map-groups=200000,0,9",
        "--setuid=0", "--setgid=0", "--",
    ]  # fmt: skip
    tar = argv[7:]
    assert tar[0] == "tar" and tar[-1] == "."
    assert {"--numeric-owner", "--one-file-system", "--acls", "--file=-"} <= set(tar)
    assert "--use-compress-program=zstd -q" in tar
    assert folder.rootfs == Path("/pool/containers/c/rootfs")


def test_a_privileged_containers_tree_is_read_as_it_is() -> None:
    argv = poolread.tar_argv(LocalFolder(Path("/p"), None, None), "zstd")
    assert argv[0] == "tar"


def test_the_rename_makes_lxds_layout_and_leaves_symlink_targets(tmp_path: Path) -> None:
    """GNU tar itself applies the rename: "." to rootfs, "./x" to rootfs/x, a symbolic
    link's "./target" kept, a hard link's target renamed with its member."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "a").write_text("a")
    (tree / "etc" / "b").hardlink_to(tree / "etc" / "a")
    (tree / "etc" / "s").symlink_to("./a")
    archive = subprocess.run(
        ["tar", "--create", "--file=-", "--sort=name", poolread.RENAME, "."],
        cwd=tree, check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: m for m in tar}
    assert sorted(members) == [
        "rootfs",
        "rootfs/etc",
        "rootfs/etc/a",
        "rootfs/etc/b",
        "rootfs/etc/s",
    ]
    assert members["rootfs/etc/b"].linkname == "rootfs/etc/a"
    assert members["rootfs/etc/s"].linkname == "./a"


def test_the_metadata_member_starts_a_tarball_that_another_continues() -> None:
    metadata = b"architecture: x86_64\n" * 30
    rest = io.BytesIO()
    with tarfile.open(fileobj=rest, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("rootfs")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    member = poolread.metadata_member(metadata)
    assert len(member) % tarfile.BLOCKSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(member + rest.getvalue())) as tar:
        names = tar.getnames()
        data = tar.extractfile("metadata.yaml")
        assert data is not None and data.read() == metadata
    assert names == ["metadata.yaml", "rootfs"]


def test_the_metadata_keeps_the_containers_and_adds_the_marks(tmp_path: Path) -> None:
    (tmp_path / "metadata.yaml").write_text(
        "architecture: x86_64\ncreation_date: 1\nproperties:\n  os: debian\n  description: d\n"
    )
    folder = LocalFolder(tmp_path, None, None)
    text = poolread.metadata_yaml(folder, {"description": "new", "user.edibuild.project": "p"})
    assert yaml.safe_load(text) == {
        "architecture": "x86_64",
        "creation_date": 1,
        "properties": {"os": "debian", "description": "new", "user.edibuild.project": "p"},
    }


def test_metadata_that_is_no_mapping_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "metadata.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match="not a mapping"):
        poolread.metadata_yaml(LocalFolder(tmp_path, None, None), {})
