"""Project files are untrusted: each rule refuses bad input with file, line, key and hint.

Rules (README "Trust"): templates run sandboxed and bounded; names are names; paths stay
inside the project and edibuild's shipped folder; values are checked for what they are;
parsing is bounded. The fixtures in tests/fixtures/projects/ are the examples, the tmp
variants the rest of each rule.

This module: the fixture examples of every rule, and rule 1 (templates); rules 2 and 3 are
in test_untrusted_names.py, rules 5 and 6 in test_untrusted_values.py, the shared helpers
in tests/unit/untrusted.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edibuild.errors import ConfigError
from tests.unit.untrusted import BASE, FIXTURES, assert_at, refusal, write

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
