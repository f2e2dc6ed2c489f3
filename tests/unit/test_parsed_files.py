"""The playbooks' up-to-date check: what a file says, parsed again only when its stamp moved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edibuild.engine import plan
from edibuild.store import yamldigest


def saved_after_run(check: plan.ParsedFiles) -> dict[str, object]:
    """What doit stores after a successful run (the check's value saver)."""

    class Task:
        value_savers: list = []

    task = Task()
    check.configure_task(task)
    return task.value_savers[0]()


def test_a_comment_is_no_change_and_a_value_is(tmp_path: Path) -> None:
    book = tmp_path / "main.yml"
    book.write_text("- name: a\n  debug: {msg: 1}\n")
    values = saved_after_run(plan.ParsedFiles([book]))
    book.write_text("# a comment\n- name: a\n  debug: {msg: 1}\n")
    assert plan.ParsedFiles([book])(None, values)
    book.write_text("- name: a\n  debug: {msg: 2}\n")
    assert not plan.ParsedFiles([book])(None, values)


def test_an_unchanged_stamp_is_not_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = tmp_path / "main.yml"
    book.write_text("- name: a\n")
    values = saved_after_run(plan.ParsedFiles([book]))
    yamldigest._memo.clear()
    parsed: list[bytes] = []
    real = yamldigest.yaml_text_digest
    monkeypatch.setattr(yamldigest, "yaml_text_digest", lambda t: parsed.append(t) or real(t))
    assert plan.ParsedFiles([book])(None, values)
    assert parsed == []  # the digest recorded with this stamp stands
    stat = book.stat()
    book.write_text("- name: b\n")  # same size, content changed
    os.utime(book, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert not plan.ParsedFiles([book])(None, values)
    assert parsed == [b"- name: b\n"]


def test_a_missing_file_is_a_change(tmp_path: Path) -> None:
    book = tmp_path / "main.yml"
    book.write_text("- name: a\n")
    values = saved_after_run(plan.ParsedFiles([book]))
    book.unlink()
    assert not plan.ParsedFiles([book])(None, values)
