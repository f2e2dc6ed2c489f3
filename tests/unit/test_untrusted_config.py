"""Project files are untrusted: each rule refuses bad input with file, line, key and hint.

Rules (README "Trust"): templates run sandboxed and bounded; names are names; paths stay
inside the project and edibuild's shipped folder; values are checked for what they are;
parsing is bounded. The fixtures in tests/fixtures/projects/ are the examples, the tmp
variants the rest of each rule.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edibuild.config import Host, load_project, load_projects
from edibuild.config.includes import MAX_FILE_BYTES
from edibuild.config.names import RESERVED_TASKS
from edibuild.config.paths import MAX_FOLDER_BYTES, MAX_FOLDER_FILES
from edibuild.config.project import Project
from edibuild.engine.plan import creators
from edibuild.engine.session import Session
from edibuild.errors import ConfigError, EdibuildError
from edibuild.image.layout import MAX_SIZE
from edibuild.image.layout_parse import parse_size
from edibuild.image.reproducible import source_date_epoch
from edibuild.store.workspace import Workspace
from stages import all_stages

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "projects"
SHIPPED = FIXTURES / "shipped"
HOST = Host(architecture="amd64", user="tester", hostname="testhost")
BASE = "description: t\nbootstrap:\n  architecture: amd64\n  suite: bookworm\n"

# fixture folder, line, key, words of the message, words of the hint
CASES = [
    ("sandbox-escape", 5, "bootstrap.mirror", "unsafe", "sandbox"),
    ("sandbox-include", 5, "bootstrap.mirror", "cannot include", "include:"),
    ("render-bomb", 5, "bootstrap.packages", "beyond its limits", "MiB"),
    ("bad-node-key", 6, "playbooks.100_base/../../../x", "not a valid name", "letters"),
    ("stage-name-taken", 6, "postprocessing.100_why", "'why' is taken", "rename"),
    ("output-file-taken", 9, "postprocessing.100_notes.outputs.notes", "'log' is taken", "log"),
    ("plugin-outside", 7, "playbooks.100_base.path", "leads outside", "inside"),
    ("include-absolute", 6, "include", "must be a relative path", "relative"),
    ("mirror-newline", 5, "bootstrap.mirror", "holds '\\n'", "sources.list"),
    ("package-newline", 6, "bootstrap.packages", "not a Debian package name", "one package"),
    ("gpt-label-quote", 10, "layout.partitions.20_root.label", "holds the character", "not"),
    ("bootable-string", 7, "layout.partitions.10_boot.bootable", "true or false", "quotes"),
    ("size-beyond-table", 9, "layout.partitions.20_root.size", "msdos table", "gpt"),
    ("epoch-not-number", 6, "export.source_date_epoch", "whole number", "digits"),
    ("input-switched-off", 8, "postprocessing.100_upload.inputs", "does not run", "mender"),
    ("hostname-newline", 9, "playbooks.100_base.parameters.hostname", "host name", "newlines"),
    ("yaml-deep", 6, "parameters.deep", "more than 64 levels", "flatten"),
    ("yaml-alias-bomb", 11, "parameters.f", "more than 100000 values", "aliases"),
]


def plan(projects: tuple[Project, ...], folder: Path) -> None:
    """What dodo.py does before doit starts: every stage slice of every project."""
    workspace = Workspace(folder, folder, SHIPPED, folder / "a", folder / "c", folder / "s")
    Session(workspace, projects, all_stages()).validate()


def refusal(folder: Path) -> EdibuildError:
    """Load and plan a projects folder that must be refused; return the error."""
    with pytest.raises(EdibuildError) as caught:
        plan(load_projects(folder, shipped_dir=SHIPPED, host=HOST), folder)
    return caught.value


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def assert_at(error: EdibuildError, file: Path, line: int | None, key: str | None) -> None:
    """The error names the file, the line and the key, and carries a hint."""
    assert error.location is not None, error
    assert (error.location.file, error.location.line, error.key) == (file, line, key), str(error)
    assert error.hint, str(error)
    where = f"{file}:{line}: " if line else f"{file}: "
    assert str(error).startswith(where + (f"{key}: " if key else "")), str(error)


@pytest.mark.parametrize(("case", "line", "key", "words", "hint"), CASES)
def test_each_fixture_is_refused_at_its_line_and_key(
    case: str, line: int, key: str, words: str, hint: str
) -> None:
    error = refusal(FIXTURES / case)
    assert_at(error, FIXTURES / case / "project.yml", line, key)
    assert words in error.message
    assert error.hint is not None and hint in error.hint


def test_a_project_file_named_dots_is_refused() -> None:
    """`...yml` would be the project `..`, whose artifacts are one folder up."""
    error = refusal(FIXTURES / "bad-project-name")
    assert_at(error, FIXTURES / "bad-project-name" / "...yml", None, None)
    assert "'..' is not a valid name" in error.message


# -- rule 1: templates are sandboxed and bounded ---------------------------------------


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("cycler.__init__.__globals__.os.popen('id').read()", "unsafe"),
        ("lipsum.__globals__['os'].system('true')", "unsafe"),
        ("''.__class__.__mro__[1].__subclasses__()", "unsafe"),
        ("joiner.__init__.__globals__", "unsafe"),
        ("namespace.__init__.__globals__", "unsafe"),
        ("self._TemplateReference__context", "unsafe"),
        ("'{0.__class__}'.format(1)", "unsafe"),
        ("[1].append(2)", "unsafe"),
        ("{'a': 1}.update(b=2)", "unsafe"),
        ("range(10 ** 9) | list", "beyond its limits"),
        ("'x' * 10 ** 9", "beyond its limits"),
        ("[0] * 10 ** 9", "beyond its limits"),
        ("9 ** 999999", "beyond its limits"),
        ("(9 ** 1000) * (9 ** 1000)", "beyond its limits"),
        ("('x' * 999999) + ('x' * 999999)", "beyond its limits"),
        ("(range(99999) | list) + (range(99999) | list) * 10", "beyond its limits"),
        ("(" * 3000 + "1" + ")" * 3000, "nested too deeply"),
    ],
)
def test_templates_cannot_reach_python_or_blow_up(
    tmp_path: Path, expression: str, words: str
) -> None:
    write(tmp_path, "p.yml", BASE + 'parameters:\n  x: "{{ ' + expression + ' }}"\n')
    error = refusal(tmp_path)
    assert words in error.message
    assert error.location is not None and error.location.file == tmp_path / "p.yml"


@pytest.mark.parametrize(
    "tag",
    ["{% include '/etc/hostname' %}", "{% import '/etc/hostname' as x %}",
     "{% extends '/etc/hostname' %}", "{% from 'x.yml' import y %}"],
)  # fmt: skip
def test_templates_read_no_other_file(tmp_path: Path, tag: str) -> None:
    write(tmp_path, "x.yml", "y: 1\n")
    write(tmp_path, "p.yml", BASE + tag + "\n")
    error = refusal(tmp_path)
    assert "cannot include, import or extend" in error.message
    assert_at(error, tmp_path / "p.yml", 5, error.key)


def test_a_template_output_bomb_stops_at_the_cap(tmp_path: Path) -> None:
    loop = "{% for i in range(99999) %}{% for j in range(99999) %}xxxxxxxx{% endfor %}{% endfor %}"
    write(tmp_path, "p.yml", BASE + "parameters:\n  x: " + loop + "\n")
    error = refusal(tmp_path)
    assert "longer than" in error.message
    assert_at(error, tmp_path / "p.yml", 6, "parameters.x")


def test_a_template_that_never_ends_is_stopped(tmp_path: Path) -> None:
    loop = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
    write(tmp_path, "p.yml", BASE + "parameters:\n  x: 1\n" + loop + "\n")
    error = refusal(tmp_path)
    assert "longer than" in error.message and "s (a loop" in error.message
    assert error.location is not None and error.location.line == 7


def test_lxd_profiles_render_in_the_same_sandbox(tmp_path: Path) -> None:
    """configure renders profile plugins at build time: same sandbox, same bounds."""
    from edibuild.config.includes import read_layer

    profile = write(tmp_path, "profile.yml", 'config:\n  x: "{{ cycler.__init__ }}"\n')
    with pytest.raises(ConfigError) as caught:
        read_layer(profile, {})
    assert_at(caught.value, profile, 2, "config.x")
    assert "unsafe" in caught.value.message


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


# -- rule 5: values are checked for what they are --------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ('  mirror: "http://deb.debian.org/debian main\\ndeb x"', "bootstrap.mirror", "holds"),
        ('  mirror: "http://deb.debian.org/ debian"', "bootstrap.mirror", "holds ' '"),
        ('  mirror: "http://deb.debian.org/debian\\t"', "bootstrap.mirror", "holds"),
        ('  mirror: "http://deb.debian.org/\\"x"', "bootstrap.mirror", "holds"),
        ('  components: ["main contrib"]', "bootstrap.components", "not an archive component"),
        ('  components: ["main\\n"]', "bootstrap.components", "not an archive component"),
        ('  components: ["main,contrib"]', "bootstrap.components", "not an archive component"),
        ('  packages: ["sudo\\n"]', "bootstrap.packages", "not a Debian package"),
        ('  packages: ["sudo,vim"]', "bootstrap.packages", "not a Debian package"),
    ],
)
def test_bootstrap_text_goes_into_sources_list_plainly(
    tmp_path: Path, line: str, key: str, words: str
) -> None:
    error = refusal(write(tmp_path, "p.yml", BASE + line + "\n").parent)
    assert_at(error, tmp_path / "p.yml", 5, key)
    assert words in error.message


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("hostname", '"a b"', "not a valid host name"),
        ("hostname", '"-vm"', "not a valid host name"),
        ("hostname", '"vm\\u001b[2J"', "holds the character"),
        ("hostname", "42", "must be a host name"),
        ("default_user_name", '"root:x"', "not a valid user name"),
        ("default_user_name", '"Edi"', "not a valid user name"),
        ("default_user_name", '"edi\\n"', "holds the character"),
        ("default_user_password", '"$6$x$y\\nroot::0"', "holds the character"),
        ("default_user_password", '"$6$x:y"', "holds the character ':'"),
        ("apt_security", '"no"', "true or false"),
    ],
)
@pytest.mark.parametrize("where", ["project", "node"])
def test_parameters_edibuild_knows_are_checked(
    tmp_path: Path, name: str, value: str, words: str, where: str
) -> None:
    write(tmp_path, "playbooks/base.yml", "- hosts: all\n")
    if where == "project":
        text, line, key = f"parameters:\n  {name}: {value}\n", 6, f"parameters.{name}"
    else:
        text = "playbooks:\n  100_b:\n    path: playbooks/base.yml\n    parameters:\n"
        text += f"      {name}: {value}\n"
        line, key = 9, f"playbooks.100_b.parameters.{name}"
    error = refusal(write(tmp_path, "p.yml", BASE + text).parent)
    assert_at(error, tmp_path / "p.yml", line, key)
    assert words in error.message


def test_good_parameters_pass(tmp_path: Path) -> None:
    text = "parameters:\n  hostname: pi-3.lan\n  default_user_name: edi\n  apt_security: false\n"
    (project,) = load_projects(write(tmp_path, "p.yml", BASE + text).parent,
                               shipped_dir=SHIPPED, host=HOST)  # fmt: skip
    assert project.parameters["hostname"] == "pi-3.lan"


def test_descriptions_carry_no_terminal_escapes(tmp_path: Path) -> None:
    text = (
        'description: "fine\\u001b]0;owned\\u0007"\nbootstrap: {architecture: amd64, suite: sid}\n'
    )
    error = refusal(write(tmp_path, "p.yml", text).parent)
    assert_at(error, tmp_path / "p.yml", 1, "description")


@pytest.mark.parametrize(
    ("partition", "key", "words"),
    [
        ('{size: auto, label: "a\\"b"}', "label", "holds the character '\"'"),
        ('{size: auto, label: "a\\\\b"}', "label", "holds the character"),
        ('{size: auto, label: "a\\u202eb"}', "label", "holds the character"),
        ("{size: auto, label: 42}", "label", "must be a partition label"),
        ('{size: auto, label: "éééééééééé"}', "label", "1 to 16 characters"),
        ("{size: auto, bootable: 1}", "bootable", "true or false"),
        ("{size: auto, bootable: yes please}", "bootable", "true or false"),
        ("{size: 1e12}", "size", "not a size"),
        ("{size: 4096.5}", "size", "not a size"),
        ('{size: "1.0000001GiB"}', "size", "whole number of bytes"),
        ("{size: 100000TiB}", "size", "larger than"),
        ("{size: 9999999999999999999999999}", "size", "larger than"),
        ("{size: auto, margin: 100000TiB}", "margin", "larger than"),
        ("{size: auto, start: 100000TiB}", "start", "larger than"),
    ],
)
def test_partition_values(tmp_path: Path, partition: str, key: str, words: str) -> None:
    layout = f"layout:\n  table: gpt\n  partitions:\n    20_root: {partition}\n"
    error = refusal(write(tmp_path, "p.yml", BASE + layout).parent)
    assert_at(error, tmp_path / "p.yml", 8, f"layout.partitions.20_root.{key}")
    assert words in error.message


def test_vfat_labels_refuse_what_fat_cannot_hold(tmp_path: Path) -> None:
    boot = '10_boot: {filesystem: vfat, size: 64MiB, content: /boot, label: "A/B"}'
    layout = f"layout:\n  partitions:\n    {boot}\n    20_root: {{size: auto}}\n"
    error = refusal(write(tmp_path, "p.yml", BASE + layout).parent)
    assert_at(error, tmp_path / "p.yml", 7, "layout.partitions.10_boot.label")


def test_sizes_are_exact_and_bounded_by_the_table(tmp_path: Path) -> None:
    assert parse_size(MAX_SIZE - 1) == MAX_SIZE - 1
    assert parse_size("1.5GiB") == 1610612736
    with pytest.raises(ValueError, match="whole number"):
        parse_size("1.0000000000000001GiB")  # a float reads it as 1 GiB
    assert parse_size(MAX_SIZE) == MAX_SIZE
    with pytest.raises(ValueError):
        parse_size(MAX_SIZE + 1)
    gpt = "layout:\n  table: gpt\n  partitions:\n    20_root: {size: 3TiB}\n"
    (project,) = load_projects(write(tmp_path, "p.yml", BASE + gpt).parent,
                               shipped_dir=SHIPPED, host=HOST)  # fmt: skip
    plan((project,), tmp_path)  # beyond MBR, fine for GPT
    edge = "layout:\n  partitions:\n    20_root: {size: 2047GiB}\n"
    write(tmp_path, "p.yml", BASE + edge)
    plan(load_projects(tmp_path, shipped_dir=SHIPPED, host=HOST), tmp_path)  # ends below 2 TiB
    write(tmp_path, "p.yml", BASE + edge.replace("2047GiB", "2TiB"))
    assert "msdos table" in refusal(tmp_path).message


@pytest.mark.parametrize(
    ("value", "words"),
    [("yesterday", "whole number"), ("1.5", "whole number"), ("true", "whole number"),
     ("-1", "out of range"), ("99999999999", "out of range")],
)  # fmt: skip
def test_source_date_epoch_is_checked_at_load(tmp_path: Path, value: str, words: str) -> None:
    error = refusal(
        write(tmp_path, "p.yml", BASE + f"export:\n  source_date_epoch: {value}\n").parent
    )
    assert_at(error, tmp_path / "p.yml", 6, "export.source_date_epoch")
    assert words in error.message


def test_source_date_epoch_from_the_environment_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project,) = load_projects(write(tmp_path, "p.yml", BASE).parent,
                               shipped_dir=SHIPPED, host=HOST)  # fmt: skip
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(EdibuildError, match="SOURCE_DATE_EPOCH: must be a whole number"):
        source_date_epoch(project)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch(project) == 1700000000


@pytest.mark.parametrize(
    ("inputs", "words"),
    [("[mender.artifact]", "the mender stage does not run"),
     ("[disk.image]", "the disk stage does not run"),
     ("[partitions.root]", "the partitions stage does not run"),
     ("[boottest.result]", "the boottest stage does not run"),
     ("[{a: 1}]", "list of STAGE.OUTPUT")],
)  # fmt: skip
def test_reading_a_stage_that_does_not_run_is_an_error(
    tmp_path: Path, inputs: str, words: str
) -> None:
    node = f"    command: [touch, x]\n    inputs: {inputs}\n    outputs: {{o: o.txt}}\n"
    error = refusal(write(tmp_path, "p.yml", BASE + "postprocessing:\n  100_x:\n" + node).parent)
    assert_at(error, tmp_path / "p.yml", 8, "postprocessing.100_x.inputs")
    assert words in error.message


# -- rule 6: parsing is bounded --------------------------------------------------------


def test_a_file_beyond_the_size_cap_is_not_read(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yml", BASE + "#" * MAX_FILE_BYTES + "\n")
    error = refusal(path.parent)
    assert error.location is not None and error.location.file == path
    assert "larger than" in error.message


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ("deep:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 80)) + "  " * 80 + "v: 1\n",
         69, None, "levels deep"),
        ("deep: " + "{a: " * 100 + "1" + "}" * 100 + "\n", 5, "deep", "levels deep"),
        ("a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n", 6, "b",
         "levels deep"),
        ("a: &a [1, *a]\n", 5, "a", "repeats a value it is part of"),
        ("a0: &a0 {x: 1}\n" + "".join(f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}\n"
                                      for i in range(1, 40)), 19, "a14", "100000 values"),
        ("a: &a [" + ", ".join(["x"] * 1000) + "]\nb: [" + ", ".join(["*a"] * 200) + "]\n", 6,
         "b", "100000 values"),
    ],
)  # fmt: skip
def test_nesting_and_aliases_are_bounded_before_composing(
    tmp_path: Path, text: str, line: int, key: str | None, words: str
) -> None:
    error = refusal(write(tmp_path, "p.yml", BASE + text).parent)
    assert error.location is not None
    assert (error.location.file, error.location.line) == (tmp_path / "p.yml", line)
    if key is not None:
        assert error.key == key
    assert words in error.message


def test_a_plain_alias_still_works(tmp_path: Path) -> None:
    text = "parameters:\n  base: &b {a: 1}\n  copy: *b\n  list: &l [1, 2]\n  again: *l\n"
    (project,) = load_projects(write(tmp_path, "p.yml", BASE + text).parent,
                               shipped_dir=SHIPPED, host=HOST)  # fmt: skip
    assert project.parameters["copy"] == {"a": 1} and project.parameters["again"] == [1, 2]


def test_shipped_projects_still_load() -> None:
    """The rules refuse none of edibuild's own projects."""
    repo = Path(__file__).resolve().parents[2] / "projects"
    projects = load_projects(repo, shipped_dir=repo, host=HOST)
    assert len(projects) >= 4
    plan(projects, repo)


def test_load_project_checks_a_single_file_too(tmp_path: Path) -> None:
    write(tmp_path, "a b.yml", BASE)
    with pytest.raises(ConfigError, match="not a valid name"):
        load_project(tmp_path / "a b.yml", shipped_dir=SHIPPED, host=HOST)
