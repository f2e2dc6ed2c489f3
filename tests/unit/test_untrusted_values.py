"""Untrusted project files, rules 5 and 6 (README "Trust"): values are checked for what they
are (sources.list text, parameters, partitions, sizes, epochs, stage inputs), and parsing
is bounded (file size, nesting, aliases); each refusal names file, line, key and hint.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edibuild.config import load_project, load_projects
from edibuild.config.includes import MAX_FILE_BYTES
from edibuild.errors import ConfigError, EdibuildError
from edibuild.image.layout import MAX_SIZE
from edibuild.image.layout_parse import parse_size
from edibuild.image.reproducible import source_date_epoch
from tests.unit.untrusted import BASE, HOST, SHIPPED, assert_at, plan, refusal, write

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
