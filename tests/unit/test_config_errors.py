"""Every configuration error names the file, the line and the key, and carries a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from edibuild.config import Host, load_project
from edibuild.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "projects"
SHIPPED = FIXTURES / "shipped"
HOST = Host(architecture="amd64", user="tester", hostname="testhost")

# case folder, file that is wrong, line, key, words the message must contain, words of the hint
CASES = [
    ("yaml-syntax", "project.yml", 5, "bootstrap.packages", "YAML syntax error", "indentation"),
    ("unknown-key", "project.yml", 5, "bootstrap.pakages", "unknown key 'pakages'", "'packages'"),
    ("jinja-undefined", "project.yml", 4, "bootstrap.suite", "'release' is undefined", "default"),
    ("jinja-syntax", "project.yml", 5, "bootstrap.mirror", "Jinja2 syntax error", "tags"),
    ("missing-plugin", "project.yml", 7, "playbooks.100_base.path", "does-not-exist.yml", "path"),
    ("missing-include", "project.yml", 4, "include", "common/nowhere.yml", "relative"),
    ("include-cycle", "b.yml", 4, "include", "include cycle", "remove"),
    ("unknown-architecture", "project.yml", 4, "bootstrap.architecture", "'aarch64'", "'arm64'"),
    ("unknown-suite", "project.yml", 4, "bootstrap.suite", "'bokworm'", "'bookworm'"),
    ("wrong-type", "project.yml", 5, "bootstrap.packages", "list of package names", "[first"),
    ("edi-general", "project.yml", 2, "general", "top-level key 'general'", "general.parameters"),
    ("lxd-unknown-key", "project.yml", 6, "lxd.netwrk", "unknown key 'netwrk'", "'network'"),
]


def load_case(case: str) -> ConfigError:
    """Load a fixture project that must fail and return its error."""
    with pytest.raises(ConfigError) as caught:
        load_project(FIXTURES / case / "project.yml", shipped_dir=SHIPPED, host=HOST)
    return caught.value


@pytest.mark.parametrize(("case", "file", "line", "key", "words", "hint"), CASES)
def test_error_names_file_line_and_key(
    case: str, file: str, line: int, key: str, words: str, hint: str
) -> None:
    """The error points at the file, line and key the user must fix."""
    error = load_case(case)
    assert error.location is not None
    assert error.location.file == FIXTURES / case / file
    assert error.location.line == line
    assert error.key == key
    assert words in error.message
    assert error.hint is not None and hint in error.hint
    text = str(error)
    assert f"{FIXTURES / case / file}:{line}: {key}: " in text
    assert "hint: " in text


def test_wrong_type_reads_naturally() -> None:
    """The type error says what was expected and what was found."""
    text = str(load_case("wrong-type"))
    assert "bootstrap.packages: must be a list of package names, got a string" in text


def test_missing_plugin_lists_the_places_tried() -> None:
    """Both lookup places are named so the user sees where to put the file."""
    message = load_case("missing-plugin").message
    assert str(FIXTURES / "missing-plugin" / "playbooks" / "does-not-exist.yml") in message
    assert str(SHIPPED / "playbooks" / "does-not-exist.yml") in message


def test_include_cycle_shows_the_chain() -> None:
    """The cycle is spelled out file by file."""
    message = load_case("include-cycle").message
    chain = ["project.yml", "a.yml", "b.yml", "a.yml"]
    assert " -> ".join(str(FIXTURES / "include-cycle" / name) for name in chain) in message


def test_yaml_syntax_error_says_where_the_list_started() -> None:
    """An unclosed flow list is reported at its own line, with context."""
    assert "flow sequence started on line 5" in load_case("yaml-syntax").message


def write(folder: Path, name: str, text: str) -> Path:
    """Write a file into a temporary project folder."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_for(path: Path) -> ConfigError:
    """Load a temporary project that must fail."""
    with pytest.raises(ConfigError) as caught:
        load_project(path, shipped_dir=SHIPPED, host=HOST)
    return caught.value


BASE = "bootstrap:\n  architecture: amd64\n  suite: bookworm\n"


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ("bootstrp:\n  suite: x\n", 1, "bootstrp", "did you mean 'bootstrap'"),
        (BASE + "playbooks:\n  100_x:\n    pth: a.yml\n", 6, "playbooks.100_x.pth", "'path'"),
        (BASE + "layout: [1, 2]\n", 4, "layout", "must be a mapping"),
        (BASE + "  mirror: ftp://example.org/debian\n", 4, "bootstrap.mirror", "not an http"),
        (BASE + "  variant: tiny\n", 4, "bootstrap.variant", "unknown variant"),
        (BASE + "  tool: cdebootstrap\n", 4, "bootstrap.tool", "did you mean 'debootstrap'"),
        (BASE + "  packages: [Python3]\n", 4, "bootstrap.packages", "not a Debian package"),
        (BASE + "  components: []\n", 4, "bootstrap.components", "must not be empty"),
        ("bootstrap:\n  suite: bookworm\n", 1, "bootstrap.architecture", "required"),
        (BASE + "a: 1\na: 2\n", 5, "a", "set twice"),
        (BASE + "playbooks:\n  100_x:\n    skip: maybe\n", 6, "playbooks.100_x.skip", "true"),
        (BASE + "parameters:\n  edibuild_user: me\n", 5, "parameters.edibuild_user", "reserved"),
        (BASE + "description: |\n  two\n  lines\n", 4, "description", "single line"),
        (BASE + "include: common.yml\n", 4, "include", "list of file names"),
        (BASE + "created: !!binary aGk=\n", 4, "created", "unsupported"),
    ],
)
def test_more_mistakes(tmp_path: Path, text: str, line: int, key: str, words: str) -> None:
    """Typos, wrong types and invalid values are caught with file, line and key."""
    error = error_for(write(tmp_path, "p.yml", text))
    assert error.location is not None
    assert (error.location.file, error.location.line, error.key) == (tmp_path / "p.yml", line, key)
    assert words in str(error)


def test_undefined_variable_in_an_include_names_the_include(tmp_path: Path) -> None:
    """Includes are rendered with the parameters; a missing one points into the include."""
    write(tmp_path, "common/base.yml", "# base\nbootstrap:\n  suite: {{ suite }}\n")
    project = write(tmp_path, "p.yml", "include: [common/base.yml]\n")
    error = error_for(project)
    assert error.location is not None
    assert (error.location.file, error.location.line) == (tmp_path / "common/base.yml", 3)
    assert error.key == "bootstrap.suite"
    assert "'suite' is undefined" in error.message


def test_included_files_cannot_set_parameters(tmp_path: Path) -> None:
    """Parameters belong to the project and the overlays, which render the includes."""
    write(tmp_path, "inc.yml", "parameters:\n  suite: bookworm\n")
    error = error_for(write(tmp_path, "p.yml", BASE + "include: [inc.yml]\n"))
    assert error.location is not None
    assert (error.location.file, error.location.line) == (tmp_path / "inc.yml", 1)
    assert error.key == "parameters"


def test_overlays_cannot_include(tmp_path: Path) -> None:
    """Overlays set values; they do not pull in more files."""
    write(tmp_path, "overlays/global.yml", "include: [x.yml]\n")
    error = error_for(write(tmp_path, "p.yml", BASE))
    assert error.location is not None
    assert error.location.file == tmp_path / "overlays/global.yml"
    assert error.key == "include"


def test_errors_in_rendered_lines_map_back_to_the_source(tmp_path: Path) -> None:
    """Lines removed by {% if %} do not shift the reported line."""
    text = (
        "{% if false %}\nignored: 1\nignored2: 2\n{% endif %}\n"
        "bootstrap:\n  architecture: amd64\n  suite: bookworm\n  pakages: []\n"
    )
    error = error_for(write(tmp_path, "p.yml", text))
    assert error.location is not None
    assert error.location.line == 8
    assert error.key == "bootstrap.pakages"
