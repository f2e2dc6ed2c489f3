"""Turning ansible-runner events into progress lines, a log, and readable failures."""

from __future__ import annotations

import json
from pathlib import Path

from edibuild.ansible.playbook import Progress, failure_message, inventory


def test_progress_lines_log_and_failure(tmp_path: Path) -> None:
    """One line per task for the user, the full output in the log, the failure kept."""
    lines: list[str] = []
    progress = Progress("base", tmp_path / "log.txt", echo=lines.append)
    progress(
        {
            "event": "playbook_on_task_start",
            "stdout": "TASK [Install]",
            "event_data": {"task": "Install"},
        }
    )
    progress(
        {
            "event": "runner_on_ok",
            "stdout": "changed: [c]",
            "event_data": {"task": "Install", "res": {"changed": True}},
        }
    )
    progress(
        {
            "event": "runner_on_failed",
            "stdout": "fatal: [c]: FAILED!",
            "event_data": {
                "task": "Break",
                "host": "c",
                "ignore_errors": None,
                "res": {"msg": "non-zero return code", "stderr": "boom"},
            },
        }
    )
    progress(
        {"event": "runner_on_failed", "event_data": {"task": "Ignored", "ignore_errors": True}}
    )
    assert lines == ["  [base] Install"]
    assert (progress.tasks, progress.changed) == (1, 1)
    assert progress.failures == ["task 'Break' failed on host c: non-zero return code\nboom"]
    assert (tmp_path / "log.txt").read_text().splitlines() == [
        "TASK [Install]",
        "changed: [c]",
        "fatal: [c]: FAILED!",
    ]


def test_long_failure_output_is_cut() -> None:
    """A failure shows the last lines of a long message, not a wall of text."""
    res = {"msg": "\n".join(f"line {i}" for i in range(100))}
    text = failure_message({"task": "T", "host": "h", "res": res}, "runner_on_unreachable")
    assert text.startswith("task 'T' unreachable on host h: ...")
    assert "line 99" in text and "line 10\n" not in text


def test_inventory_uses_own_connection() -> None:
    """The container is reached through edibuild_lxd with the endpoint as JSON."""
    inv = inventory("box", {"url": "/var/lib/lxd/unix.socket", "cert": None, "verify": True})
    host = inv["all"]["hosts"]["box"]
    assert host["ansible_connection"] == "edibuild_lxd"
    assert json.loads(host["edibuild_lxd_endpoint"])["url"] == "/var/lib/lxd/unix.socket"


def test_task_timings_come_from_result_events(tmp_path: Path) -> None:
    """Each task's seconds (ansible-runner's event durations) are kept for the manifest."""
    progress = Progress("base", tmp_path / "log.txt", echo=lambda _: None)
    progress({"event": "runner_on_ok", "event_data": {"task": "Install", "duration": 12.345}})
    progress({"event": "runner_on_skipped", "event_data": {"task": "Maybe", "duration": 0.01}})
    progress({"event": "runner_item_on_ok", "event_data": {"task": "Loop", "duration": 1.0}})
    progress({"event": "runner_on_ok", "event_data": {"task": "Odd"}})
    assert progress.timings == [
        {"task": "Install", "seconds": 12.35, "status": "ok"},
        {"task": "Maybe", "seconds": 0.01, "status": "skipped"},
        {"task": "Odd", "seconds": None, "status": "ok"},
    ]
