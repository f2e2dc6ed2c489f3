"""Untrusted project files, rules 2 and 3 (README "Trust"): names are names, and paths stay
inside the project and edibuild's shipped folder (symlinks, includes, keyrings, plugin
folders bounded); each refusal names file, line, key and hint.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edibuild.config import load_projects
from edibuild.config.names import RESERVED_TASKS
from edibuild.config.paths import MAX_FOLDER_BYTES, MAX_FOLDER_FILES
from edibuild.engine.plan import creators
from edibuild.engine.session import Session
from edibuild.store.workspace import Workspace
from stages import all_stages
from tests.unit.untrusted import BASE, HOST, SHIPPED, assert_at, refusal, write

# -- rule 2: names are names -----------------------------------------------------------


@pytest.mark.parametrize("stem", ["..", ".", ".hidden", "a b", "a:b", "a*", "-x", "é"])
def test_project_names_follow_the_name_rule(tmp_path: Path, stem: str) -> None:
    write(tmp_path, f"{stem}.yml", BASE)
    error = refusal(tmp_path)
    assert error.location is not None and error.location.file == tmp_path / f"{stem}.yml"
    assert "is not a valid name" in error.message


def test_a_file_named_dot_yml_is_refused(tmp_path: Path) -> None:
    write(tmp_path, ".yml", BASE)
    assert "'.yml' is not a valid name" in refusal(tmp_path).message


@pytest.mark.parametrize("section", ["playbooks", "lxd_profiles", "postprocessing"])
@pytest.mark.parametrize("key", ["..", "100_a/b", "100_a b", "_x", "100_a:b", "100_*", "a\tb"])
def test_node_keys_follow_the_name_rule(tmp_path: Path, section: str, key: str) -> None:
    write(tmp_path, "p.yml", BASE + f'{section}:\n  "{key}":\n    path: p.yml\n')
    error = refusal(tmp_path)
    assert_at(error, tmp_path / "p.yml", 6, f"{section}.{key}")


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ('"100_"', "not a valid name"),
        ("100_a.b", "not a valid name"),
        ("100_bootstrap", "a built-in stage"),
        ("100_disk", "a built-in stage"),
        ("100_image", "a helper task or a doit command"),
        ("100_config", "a helper task or a doit command"),
        ("100_plugins", "a helper task or a doit command"),
        ("100_trim", "a helper task or a doit command"),
        ("100_postprocessing", "a helper task or a doit command"),
        ("100_list", "a helper task or a doit command"),
        ("100_clean", "a helper task or a doit command"),
        ("100_info", "a helper task or a doit command"),
    ],
)
def test_user_stage_names_take_no_other_name(tmp_path: Path, key: str, words: str) -> None:
    node = '    command: [touch, "{output:o}"]\n    outputs: {o: o.txt}\n'
    write(tmp_path, "p.yml", BASE + f"postprocessing:\n  {key}:\n" + node)
    error = refusal(tmp_path)
    assert_at(error, tmp_path / "p.yml", 6, "postprocessing." + key.strip('"'))
    assert words in error.message


def test_two_user_stages_with_one_name_are_refused(tmp_path: Path) -> None:
    node = '    command: [touch, "{output:o}"]\n    outputs: {o: %s}\n'
    text = f"postprocessing:\n  100_x:\n{node % 'a.txt'}  200_x:\n{node % 'b.txt'}"
    error = refusal(write(tmp_path, "p.yml", BASE + text).parent)
    assert_at(error, tmp_path / "p.yml", 9, "postprocessing.200_x")


def test_reserved_names_cover_every_helper_task_and_doit_command() -> None:
    from doit.doit_cmd import DoitMain

    workspace = Workspace(Path("/x"), Path("/x"), Path("/x"), Path("/a"), Path("/c"), Path("/s"))
    session = Session(workspace, (), all_stages())
    stages = {s.name for s in all_stages()}
    helpers = {name.removeprefix("task_") for name in creators(session)} - stages
    assert helpers <= set(RESERVED_TASKS)
    assert {cmd.get_name() for cmd in DoitMain.DOIT_CMDS} <= set(RESERVED_TASKS)


LAYOUT = "layout:\n  partitions:\n    20_root: {size: auto}\n"


@pytest.mark.parametrize(
    ("name", "file", "words"),
    [
        ("o", "../escape.txt", "not a valid name"),
        ("o", "sub/x.txt", "not a valid name"),
        ("o", ".hidden", "not a valid name"),
        ("o", ".state", "not a valid name"),
        ("o", "disk.manifest.json", "edibuild's own files"),
        ("o", "p.img", "the disk stage"),
        ("o", "root.ext4", "the partitions stage"),
        ("o", "bootstrap.tar.zst", "the bootstrap stage"),
        ("o.x", "x.txt", "not a valid name"),
        ("a b", "x.txt", "not a valid name"),
    ],
)
def test_user_stage_outputs_take_no_other_file(
    tmp_path: Path, name: str, file: str, words: str
) -> None:
    node = f'    command: [touch, x]\n    outputs: {{"{name}": "{file}"}}\n'
    write(tmp_path, "p.yml", BASE + LAYOUT + "postprocessing:\n  100_x:\n" + node)
    error = refusal(tmp_path)
    assert_at(error, tmp_path / "p.yml", 11, f"postprocessing.100_x.outputs.{name}")
    assert words in error.message


def test_two_stages_writing_one_file_are_refused(tmp_path: Path) -> None:
    node = "    command: [touch, x]\n    outputs: {%s: same.txt}\n"
    text = f"postprocessing:\n  100_x:\n{node % 'a'}  200_y:\n{node % 'b'}"
    error = refusal(write(tmp_path, "p.yml", BASE + text).parent)
    assert_at(error, tmp_path / "p.yml", 11, "postprocessing.200_y.outputs.b")
    assert "the x stage" in error.message


@pytest.mark.parametrize("key", ["10_../x", "10_Root", "root", "10_", "10_a-b"])
def test_partition_keys_follow_their_rule(tmp_path: Path, key: str) -> None:
    layout = f'layout:\n  partitions:\n    "{key}": {{size: 8MiB}}\n    20_root: {{size: auto}}\n'
    error = refusal(write(tmp_path, "p.yml", BASE + layout).parent)
    assert_at(error, tmp_path / "p.yml", 7, f"layout.partitions.{key}")


# -- rule 3: paths stay inside ---------------------------------------------------------


def playbook_project(folder: Path, path: str) -> Path:
    return write(folder, "p.yml", BASE + f"playbooks:\n  100_x:\n    path: {path}\n")


@pytest.mark.parametrize("path", ["/etc/hostname", "../outside.yml", "a/../../outside.yml"])
def test_plugin_paths_are_relative_and_inside(tmp_path: Path, path: str) -> None:
    write(tmp_path, "outside.yml", "- hosts: all\n")
    error = refusal(playbook_project(tmp_path / "projects", path).parent)
    assert_at(error, tmp_path / "projects" / "p.yml", 7, "playbooks.100_x.path")


def test_a_path_into_the_shipped_folder_is_fine(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    relative = os.path.relpath(SHIPPED / "playbooks" / "app.yml", projects)
    playbook_project(projects, relative)
    (project,) = load_projects(projects, shipped_dir=SHIPPED, host=HOST)
    assert project.playbooks[0].path == SHIPPED / "playbooks" / "app.yml"


@pytest.mark.parametrize("target", ["/etc/hostname", "../../outside.yml"])
def test_symlinks_leading_out_are_refused(tmp_path: Path, target: str) -> None:
    write(tmp_path, "outside.yml", "- hosts: all\n")
    projects = tmp_path / "projects"
    (projects / "plugins").mkdir(parents=True)
    (projects / "plugins" / "link.yml").symlink_to(target)
    error = refusal(playbook_project(projects, "plugins/link.yml").parent)
    assert "leads outside" in error.message
    assert_at(error, projects / "p.yml", 7, "playbooks.100_x.path")


def test_includes_are_confined_too(tmp_path: Path) -> None:
    write(tmp_path, "outside.yml", "bootstrap: {suite: bookworm}\n")
    projects = tmp_path / "projects"
    write(projects, "common/inner.yml", "include: [../../outside.yml]\n")
    write(projects, "p.yml", BASE + "include: [common/inner.yml]\n")
    error = refusal(projects)
    assert_at(error, projects / "common" / "inner.yml", 1, "include")
    assert "leads outside" in error.message


def test_a_symlinked_project_file_or_overlay_leading_out_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "outside.yml", BASE)
    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / "p.yml").symlink_to(tmp_path / "outside.yml")
    assert "symlink leading outside" in refusal(projects).message
    (projects / "p.yml").unlink()
    write(projects, "p.yml", BASE)
    (projects / "overlays").mkdir()
    (projects / "overlays" / "global.yml").symlink_to(tmp_path / "outside.yml")
    error = refusal(projects)
    assert "symlink leading outside" in error.message
    assert error.location is not None
    assert error.location.file == projects / "overlays" / "global.yml"


def test_keyrings_come_from_the_project_or_the_hosts_keyring_folder(tmp_path: Path) -> None:
    for keyring, words in [("/etc/passwd", "outside the project"), ("../k.gpg", "outside")]:
        write(tmp_path, "k.gpg", "key")
        path = write(tmp_path / "projects", "p.yml", BASE + f"  keyring: {keyring}\n")
        error = refusal(path.parent)
        assert_at(error, path, 5, "bootstrap.keyring")
        assert words in error.message
    system = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if system.is_file():
        path = write(tmp_path / "projects", "p.yml", BASE + f"  keyring: {system}\n")
        (project,) = load_projects(path.parent, shipped_dir=SHIPPED, host=HOST)
        assert project.bootstrap.keyring == system.resolve()


def playbook_folder(tmp_path: Path) -> Path:
    """A project with one playbook in its own folder; returns that folder."""
    folder = tmp_path / "projects" / "plugins" / "base"
    write(folder, "main.yml", "- hosts: all\n")
    playbook_project(tmp_path / "projects", "plugins/base/main.yml")
    return folder


def test_a_playbook_folders_files_are_its_inputs(tmp_path: Path) -> None:
    folder = playbook_folder(tmp_path)
    write(folder, "templates/motd.j2", "hi\n")
    (project,) = load_projects(tmp_path / "projects", shipped_dir=SHIPPED, host=HOST)
    assert project.playbooks[0].files == (folder / "main.yml", folder / "templates" / "motd.j2")


def test_a_playbook_in_a_shared_or_the_project_folder_counts_alone(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    write(projects, "playbooks/a.yml", "- hosts: all\n")
    write(projects, "playbooks/b.yml", "- hosts: all\n")
    write(projects, "direct.yml.j2", "- hosts: all\n")
    text = "playbooks:\n  100_a: {path: playbooks/a.yml}\n  200_d: {path: direct.yml.j2}\n"
    write(projects, "p.yml", BASE + text)
    (project,) = load_projects(projects, shipped_dir=SHIPPED, host=HOST)
    assert [node.files for node in project.playbooks] == [(), ()]


@pytest.mark.parametrize("odd", ["too-many", "too-big", "fifo", "link-out", "folder-link"])
def test_a_playbook_folder_is_bounded_and_nothing_is_skipped(tmp_path: Path, odd: str) -> None:
    folder = playbook_folder(tmp_path)
    if odd == "too-many":
        for index in range(MAX_FOLDER_FILES):
            (folder / f"f{index}").write_text("")
    elif odd == "too-big":
        with (folder / "big.img").open("wb") as big:
            big.truncate(MAX_FOLDER_BYTES + 1)  # sparse: costs no disk
    elif odd == "fifo":
        os.mkfifo(folder / "pipe")  # reading it would block every doit command
    elif odd == "link-out":
        (folder / "shadow").symlink_to("/etc/hostname")
    else:
        (folder / "etc").symlink_to("/etc")
    error = refusal(tmp_path / "projects")
    assert_at(error, tmp_path / "projects" / "p.yml", 7, "playbooks.100_x.path")


def test_ssh_keys_are_bounded_like_a_plugin_folder(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    write(projects, "p.yml", BASE)
    write(projects, "ssh_pub_keys/me.pub", "ssh-ed25519 AAAA me\n")
    (project,) = load_projects(projects, shipped_dir=SHIPPED, host=HOST)
    assert project.ssh_keys == (projects / "ssh_pub_keys" / "me.pub",)
    (projects / "ssh_pub_keys" / "root.pub").symlink_to("/etc/hostname")
    error = refusal(projects)
    assert error.location is not None and error.location.file == projects / "ssh_pub_keys"
