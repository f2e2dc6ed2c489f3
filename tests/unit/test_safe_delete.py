"""Deletion is checked where it happens: nothing outside the artifact folder, the cache or
scratch space is removed, whatever a pointer, an entry or a name says (decoys prove it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edibuild.errors import EdibuildError, UnsafePath
from edibuild.image.debian import strip_host_state
from edibuild.store.artifacts import ProjectArtifacts
from edibuild.store.cache import Cache, Entry, Output
from edibuild.store.fsutil import confined, remove_file, remove_tree
from edibuild.store.trim import trim
from edibuild.store.workspace import Workspace

DIGEST = "ab" * 32


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """A file next to everything edibuild owns in the test; it must survive every test."""
    path = tmp_path / "decoy.txt"
    path.write_text("keep me\n")
    return path


def intact(decoy: Path) -> bool:
    return decoy.read_text() == "keep me\n"


def test_confined_accepts_inside_and_refuses_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "rootish").mkdir()
    assert confined(root / "sub" / "x", root) == root.resolve() / "sub" / "x"
    for path in (root, root / "..", root / "sub" / ".." / ".." / "x", tmp_path / "rootish" / "x",
                 Path("/etc/passwd")):  # fmt: skip
        with pytest.raises(UnsafePath):
            confined(path, root)


def test_a_symlinked_folder_leading_out_is_refused(tmp_path: Path, decoy: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    with pytest.raises(UnsafePath, match="refusing to delete"):
        remove_file(root / "out" / "decoy.txt", root)
    with pytest.raises(UnsafePath):
        remove_tree(root / "out" / "decoy.txt", root)
    assert intact(decoy)


def test_a_symlink_itself_is_removed_never_its_target(tmp_path: Path, decoy: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "file-link").symlink_to(decoy)
    (root / "dir-link").symlink_to(tmp_path)
    assert remove_file(root / "file-link", root)
    remove_tree(root / "dir-link", root)
    assert not (root / "file-link").is_symlink() and not (root / "dir-link").is_symlink()
    assert intact(decoy)


def test_remove_tree_removes_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x")
    remove_tree(root / "a", root)
    assert not (root / "a").exists() and root.is_dir()
    remove_tree(root / "gone", root)  # missing: nothing to do


def arts_with_pointer(tmp_path: Path, pointer: object) -> ProjectArtifacts:
    arts = ProjectArtifacts(tmp_path / "artifacts", "demo")
    arts.pointer("disk").parent.mkdir(parents=True)
    arts.pointer("disk").write_text(json.dumps(pointer))
    return arts


def record(file: object, sha256: object = DIGEST, size: object = 8) -> dict[str, object]:
    return {"stage": "disk", "outputs": {"image": {"file": file, "sha256": sha256, "size": size}}}


TAMPERED = [
    record("../../decoy.txt"),
    record("../decoy.txt"),
    record(str(Path("/") / "etc" / "hostname")),
    record("sub/x.img"),
    record(".."),
    record("x.img", sha256="../../decoy"),
    record("x.img", size="8"),
    {"stage": "disk", "outputs": [1, 2]},
    {"stage": "disk"},
    ["not", "a", "pointer"],
]


@pytest.mark.parametrize("pointer", TAMPERED)
def test_a_tampered_pointer_is_refused_and_deletes_nothing(
    tmp_path: Path, decoy: Path, pointer: object
) -> None:
    arts = arts_with_pointer(tmp_path, pointer)
    assert arts.outputs("disk") is None  # for deciding what to build: not built
    assert not arts.intact("disk")
    with pytest.raises(UnsafePath, match="not a pointer edibuild wrote"):
        arts.checked_outputs("disk")
    with pytest.raises(UnsafePath):
        arts.remove("disk")
    cache = Cache(tmp_path / "cache")
    entry = Entry("disk", "k" * 64, {}, {})
    with pytest.raises(UnsafePath):
        arts.install(cache, entry, {})
    assert arts.pointer("disk").exists()  # refused before anything went
    assert intact(decoy)


def test_a_state_folder_that_leads_out_is_refused(tmp_path: Path, decoy: Path) -> None:
    arts = ProjectArtifacts(tmp_path / "artifacts", "demo")
    arts.dir.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "disk.json").write_text(json.dumps(record("x.img")))
    (arts.dir / ".state").symlink_to(outside)
    with pytest.raises(UnsafePath):
        arts.remove("disk")
    assert (outside / "disk.json").exists()


def test_project_names_are_checked_at_the_artifact_folder_too(tmp_path: Path) -> None:
    for name in ("..", ".", "a/b", ""):
        with pytest.raises(UnsafePath):
            ProjectArtifacts(tmp_path, name)


def test_install_and_remove_work_inside(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    made = tmp_path / "cache" / "tmp" / "out.txt"
    made.parent.mkdir(parents=True)
    made.write_text("hello")
    entry = cache.store("disk", "1" * 64, {"image": made}, {})
    arts = ProjectArtifacts(tmp_path / "artifacts", "demo")
    arts.install(cache, entry, {"stage": "disk"})
    assert (arts.dir / "out.txt").read_text() == "hello"
    removed = arts.remove("disk")
    assert arts.dir / "out.txt" in removed and not (arts.dir / "out.txt").exists()


def test_cache_paths_come_from_digests_only(tmp_path: Path, decoy: Path) -> None:
    cache = Cache(tmp_path / "cache")
    with pytest.raises(UnsafePath):
        cache.blob("../../decoy.txt")
    with pytest.raises(UnsafePath):
        cache.forget("disk", "../../../decoy")  # a tampered .state/<stage>.key
    entry = cache.entry_path("disk", "2" * 64)
    entry.parent.mkdir(parents=True)
    outputs = {"image": {"file": "x", "sha256": "../../../decoy.txt", "size": 8, "mtime_ns": 1}}
    entry.write_text(json.dumps({"outputs": outputs}))
    assert cache.lookup("disk", "2" * 64) is None  # never trusted, never linked
    assert intact(decoy)


def test_stale_scratch_is_told_apart_exactly(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    dead = 2**22 + 12345  # above pid_max's default: no such process
    names = [f"a+b-c+{dead}-0", f"a-b+c+{dead}-0", f"a+b+{dead}-0", f"a+b+{os.getpid()}-9",
             "a+b+x-0", "a+b"]  # fmt: skip
    for name in names:
        (cache.scratch_root / name).mkdir(parents=True)
    cache.remove_stale_scratch("a", "b")
    left = sorted(p.name for p in cache.scratch_root.iterdir())
    assert left == sorted(set(names) - {f"a+b+{dead}-0"})
    with cache.scratch("a", "b") as work:
        assert work.parent == cache.scratch_root and work.name.startswith("a+b+")
    assert not work.exists()


def test_trim_removes_only_what_it_listed(tmp_path: Path, decoy: Path) -> None:
    cache = Cache(tmp_path / "cache")
    entry = cache.entry_path("disk", "3" * 64)
    entry.parent.mkdir(parents=True)
    bad = {"x": {"sha256": "../../../decoy.txt", "size": 8}, "y": "nonsense"}
    entry.write_text(json.dumps({"outputs": bad}))
    (cache.root / "blobs" / "zz").mkdir(parents=True)
    (cache.root / "blobs" / "zz" / "not-a-digest").write_text("x" * 100)
    arts = arts_with_pointer(tmp_path, record("../../decoy.txt", sha256="../decoy"))
    (arts.dir / ".state" / "disk.key").write_text("../../../decoy\n")
    report = trim(cache, tmp_path / "artifacts", budget=-1)  # remove all it may
    assert report.entries_removed == 1 and not entry.exists()
    assert (cache.root / "blobs" / "zz" / "not-a-digest").exists()  # not a blob: not ours
    assert intact(decoy)


def test_trim_refuses_a_keys_folder_that_leads_out(tmp_path: Path, decoy: Path) -> None:
    cache = Cache(tmp_path / "cache")
    (cache.root / "keys").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / f"{'4' * 64}.json").write_text("{}")
    (cache.root / "keys" / "disk").symlink_to(outside)
    with pytest.raises(EdibuildError, match="refusing to delete"):
        trim(cache, tmp_path / "artifacts", budget=-1)
    assert (outside / f"{'4' * 64}.json").exists()


def test_stripping_a_tree_never_follows_a_link_out_of_it(tmp_path: Path, decoy: Path) -> None:
    tree = tmp_path / "rootfs"
    (tree / "var").mkdir(parents=True)
    (tree / "var" / "log").symlink_to(tmp_path)  # a hostile rootfs: /var/log -> the host
    (tree / "tmp").mkdir()
    (tree / "tmp" / "leftover").write_text("x")
    (tree / "etc").mkdir()
    strip_host_state(tree)
    assert not (tree / "var" / "log").exists()  # the link went, not the folder it named
    assert not (tree / "tmp" / "leftover").exists()
    assert intact(decoy)


# -- workspace folders are checked before anything runs --------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("EDIBUILD_ARTIFACTS", "/", "root directory"),
        ("EDIBUILD_CACHE", "/", "root directory"),
        ("EDIBUILD_STATE", "/", "root directory"),
        ("EDIBUILD_PROJECTS", "/", "root directory"),
        ("EDIBUILD_ARTIFACTS", "{file}", "not a folder"),
        ("EDIBUILD_CACHE", "{file}", "not a folder"),
        ("EDIBUILD_STATE", "{file}/sub", "is a file"),
        ("EDIBUILD_PROJECTS", "{tmp}/missing", "does not exist"),
        ("EDIBUILD_PROJECTS", "{file}", "not a folder"),
        ("EDIBUILD_ARTIFACTS", "{tmp}/state", "overlaps"),
        ("EDIBUILD_ARTIFACTS", "{tmp}/state/cache/artifacts", "overlaps"),
        ("EDIBUILD_ARTIFACTS", "{tmp}/projects", "overlaps"),
        ("EDIBUILD_ARTIFACTS", "{tmp}", "overlaps"),
    ],
)
def test_workspace_folders_are_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    (tmp_path / "projects").mkdir()
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("EDIBUILD_PROJECTS", str(tmp_path / "projects"))
    monkeypatch.setenv("EDIBUILD_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("EDIBUILD_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("EDIBUILD_CACHE", raising=False)
    Workspace.from_environment(tmp_path)  # the base setting is fine
    monkeypatch.setenv(variable, value.format(tmp=tmp_path, file=tmp_path / "a-file"))
    with pytest.raises(EdibuildError) as caught:
        Workspace.from_environment(tmp_path)
    assert words in caught.value.message and variable in str(caught.value)
    assert caught.value.hint


def test_artifacts_may_live_inside_the_projects_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "projects").mkdir()
    monkeypatch.setenv("EDIBUILD_PROJECTS", str(tmp_path / "projects"))
    monkeypatch.setenv("EDIBUILD_ARTIFACTS", str(tmp_path / "projects" / "artifacts"))
    monkeypatch.setenv("EDIBUILD_STATE", str(tmp_path / "state"))
    workspace = Workspace.from_environment(tmp_path)
    assert workspace.artifacts_dir == tmp_path / "projects" / "artifacts"


def test_outputs_keep_their_fields(tmp_path: Path) -> None:
    arts = arts_with_pointer(tmp_path, record("demo.img"))
    assert arts.outputs("disk") == {"image": Output("demo.img", DIGEST, 8)}


def test_a_folder_where_a_file_belongs_is_a_message_not_a_crash(tmp_path: Path) -> None:
    arts = arts_with_pointer(tmp_path, record("demo.img"))
    arts.log("disk").mkdir(parents=True)  # log/disk.log is a folder
    with pytest.raises(EdibuildError, match="cannot delete"):
        arts.remove("disk")
