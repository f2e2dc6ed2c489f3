"""A playbook's digest follows what it says as YAML, not its bytes (store/yamldigest.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edibuild.config.project import Node
from edibuild.lxd.layers import chain_keys, step_input
from edibuild.store.fsutil import sha256_file
from edibuild.store.yamldigest import file_digest, yaml_digest, yaml_text_digest

PLAYBOOK = """\
---
# Base system.
- name: Base
  hosts: all
  gather_facts: false
  tasks:
    - name: Install
      ansible.builtin.apt:
        name: [sudo, openssh-server]
        update_cache: true
    - name: Write a file
      ansible.builtin.copy:
        dest: /etc/motd
        content: |
          hello
          world
        mode: "0644"
"""

SAME = [
    ("a comment", PLAYBOOK.replace("---\n", "---\n# edited: a comment\n")),
    ("a trailing comment", PLAYBOOK.replace("hosts: all\n", "hosts: all   # every host\n")),
    ("blank lines", PLAYBOOK.replace("  tasks:\n", "\n  tasks:\n\n\n")),
    ("trailing spaces", PLAYBOOK.replace("gather_facts: false\n", "gather_facts: false   \n")),
    ("no document marker", PLAYBOOK.replace("---\n", "")),
    ("other indentation", PLAYBOOK.replace("    - name: Install\n      ansible.builtin.apt:\n"
                                           "        name: [sudo, openssh-server]\n"
                                           "        update_cache: true\n",
                                           "    -   name: Install\n        ansible.builtin.apt:\n"
                                           "            name: [sudo, openssh-server]\n"
                                           "            update_cache: true\n")),
    ("block instead of flow", PLAYBOOK.replace(
        "name: [sudo, openssh-server]", "name:\n          - sudo\n          - openssh-server")),
    ("quotes on a string", PLAYBOOK.replace("hosts: all", "hosts: 'all'")),
    ("double quotes", PLAYBOOK.replace('mode: "0644"', "mode: '0644'")),
]  # fmt: skip

DIFFERENT = [
    ("a value", PLAYBOOK.replace("hosts: all", "hosts: web")),
    ("a quoted bool", PLAYBOOK.replace("update_cache: true", 'update_cache: "true"')),
    ("an unquoted mode", PLAYBOOK.replace('mode: "0644"', "mode: 0644")),
    ("block scalar content", PLAYBOOK.replace("          world\n", "          world!\n")),
    ("block scalar chomping", PLAYBOOK.replace("content: |", "content: |-")),
    ("a tag", PLAYBOOK.replace("hosts: all", "hosts: !unsafe all")),
    ("key order", PLAYBOOK.replace("  hosts: all\n  gather_facts: false\n",
                                   "  gather_facts: false\n  hosts: all\n")),
    ("a new task", PLAYBOOK + "    - name: More\n      ansible.builtin.command: 'true'\n"),
    ("a list item", PLAYBOOK.replace("[sudo, openssh-server]", "[sudo]")),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text"), SAME, ids=[w for w, _ in SAME])
def test_layout_and_comments_do_not_count(what: str, text: str) -> None:
    assert yaml_text_digest(text.encode()) == yaml_text_digest(PLAYBOOK.encode())


@pytest.mark.parametrize(("what", "text"), DIFFERENT, ids=[w for w, _ in DIFFERENT])
def test_what_it_says_counts(what: str, text: str) -> None:
    assert yaml_text_digest(text.encode()) != yaml_text_digest(PLAYBOOK.encode())


def test_anchor_and_alias_are_references_not_expanded() -> None:
    """An alias bomb costs what its bytes cost (aliases are never expanded)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 30)]
    started = time.monotonic()
    first = yaml_text_digest("\n".join(lines).encode())
    assert time.monotonic() - started < 1
    changed = yaml_text_digest("\n".join(lines).replace("[x, x,", "[y, x,").encode())
    assert first != changed


def test_invalid_yaml_counts_by_its_bytes() -> None:
    broken = "- name: [unclosed\n"
    assert yaml_text_digest(broken.encode()) != yaml_text_digest((broken + "# c\n").encode())
    assert yaml_text_digest(b"\xff\xfe") != yaml_text_digest(b"\xff\xfd")


def test_file_digest_parses_only_what_it_is_told(tmp_path: Path) -> None:
    path = tmp_path / "main.yml"
    path.write_text(PLAYBOOK)
    assert file_digest(path, parsed=False) == sha256_file(path)
    before = file_digest(path, parsed=True)
    path.write_text(PLAYBOOK + "# a comment\n")
    assert yaml_digest(path) == before  # memo keyed by size and mtime: the edit is seen
    path.write_text(PLAYBOOK.replace("hosts: all", "hosts: web"))
    assert yaml_digest(path) != before


def test_layer_keys_follow_what_the_playbook_says_and_the_bytes_of_its_files(
    tmp_path: Path,
) -> None:
    """A comment edit keeps every layer key; an edit of a template beside it does not."""
    book = tmp_path / "base" / "main.yml"
    template = tmp_path / "base" / "templates" / "motd.j2"
    template.parent.mkdir(parents=True)
    book.write_text(PLAYBOOK)
    template.write_text("hello {{ name }}\n")
    node = Node("100_base", book, {}, (template,))

    def keys() -> tuple[str, ...]:
        return chain_keys({"image": "f"}, [step_input(node)])

    before = keys()
    book.write_text("# top comment\n" + PLAYBOOK)
    assert keys() == before
    template.write_text("hello {{ name }}\n# a comment in a template is content\n")
    assert keys() != before
