"""Run one playbook against one container through ansible-runner, reporting like a person.

Progress goes to the user one line per task; Ansible's full output goes to the stage
log; a failure becomes a StageFailed naming the playbook, task, host and message.
Ctrl-C (or SIGTERM turned into KeyboardInterrupt) cancels the run: ansible-runner kills
the ansible-playbook process group before the interrupt is passed on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from edibuild.data import Json
from edibuild.errors import StageFailed, ToolMissing
from edibuild.host import toolpath
from edibuild.run import say

CONNECTION_PLUGINS = Path(__file__).resolve().parent / "connection"
FAILED_EVENTS = ("runner_on_failed", "runner_on_unreachable")
# The events that end a task on a host; ansible-runner gives each its duration.
RESULT_EVENTS = ("runner_on_ok", "runner_on_skipped", *FAILED_EVENTS)


@dataclass
class Progress:
    """Collects ansible-runner events: task lines for the user, failures, the log."""

    playbook: str
    log: Path
    echo: Callable[[str], None] = say
    failures: list[str] = field(default_factory=list)
    tasks: int = 0
    changed: int = 0
    # Per task: its name and the seconds it took (ansible-runner's event durations).
    timings: list[dict[str, Json]] = field(default_factory=list)
    seconds: float = 0.0

    def __call__(self, event: Mapping[str, Any]) -> bool:
        """Handle one event (ansible-runner's event_handler); True keeps it on disk."""
        text = event.get("stdout") or ""
        if text:
            with self.log.open("a", encoding="utf-8") as f:
                f.write(text + "\n")
        data = event.get("event_data") or {}
        kind = event.get("event", "")
        if kind == "playbook_on_task_start":
            self.tasks += 1
            self.echo(f"  [{self.playbook}] {data.get('task', '?')}")
        elif kind == "runner_on_ok" and (data.get("res") or {}).get("changed"):
            self.changed += 1
        if kind in FAILED_EVENTS and not data.get("ignore_errors"):
            self.failures.append(failure_message(data, kind))
        if kind in RESULT_EVENTS:
            self.timings.append(task_timing(data, kind))
        return True


def task_timing(data: Mapping[str, Any], kind: str) -> dict[str, Json]:
    """One task's name, seconds and outcome from a result event."""
    seconds = data.get("duration")
    return {
        "task": str(data.get("task", "?")),
        "seconds": round(float(seconds), 2) if isinstance(seconds, (int, float)) else None,
        "status": kind.removeprefix("runner_on_"),
    }


def failure_message(data: Mapping[str, Any], kind: str) -> str:
    """Describe a failed task event as 'task X on host H: message'."""
    res = data.get("res") or {}
    msg = str(res.get("msg") or "").strip()
    for extra in ("stderr", "module_stderr", "stdout"):
        value = str(res.get(extra) or "").strip()
        if value and value not in msg:
            msg = f"{msg}\n{value}" if msg else value
            break
    lines = msg.splitlines()
    if len(lines) > 15:
        msg = "\n".join(["...", *lines[-15:]])
    what = "unreachable" if kind == "runner_on_unreachable" else "failed"
    return f"task '{data.get('task', '?')}' {what} on host {data.get('host', '?')}: {msg}"


def inventory(host: str, endpoint: Mapping[str, Json]) -> dict[str, Json]:
    """Return an inventory with the one container, reached through edibuild_lxd."""
    return {
        "all": {
            "hosts": {
                host: {
                    "ansible_connection": "edibuild_lxd",
                    "edibuild_lxd_endpoint": json.dumps(dict(endpoint)),
                    "ansible_python_interpreter": "/usr/bin/python3",
                }
            }
        }
    }


def ansible_playbook() -> Path:
    """The ansible-playbook of edibuild's own virtualenv (never one found elsewhere first)."""
    found = toolpath.find("ansible-playbook")
    if found is None:
        raise ToolMissing(
            toolpath.not_found("ansible-playbook"),
            hint="ansible-core is a dependency of edibuild: reinstall it "
            "(./edibuild.sh sets up .venv, or pip install edibuild)",
        )
    return found


def _settings(data_dir: Path) -> dict[str, str]:
    return {
        "PATH": toolpath.search_path(),
        "ANSIBLE_CONNECTION_PLUGINS": str(CONNECTION_PLUGINS),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": str(data_dir / "tmp"),
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_GATHERING": "implicit",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
    }


def run_playbook(
    playbook: Path,
    host: str,
    endpoint: Mapping[str, Json],
    extra_vars: Mapping[str, Json],
    data_dir: Path,
    log: Path,
) -> Progress:
    """Run `playbook` against container `host`; raise StageFailed if a task fails."""
    data_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress(playbook.stem if playbook.stem != "main" else playbook.parent.name, log)
    ansible_playbook()  # found through _settings' PATH; a clear error when it is missing
    cancel = threading.Event()
    started = time.monotonic()
    thread, runner = ansible_runner.run_async(
        private_data_dir=str(data_dir),
        playbook=str(playbook.resolve()),
        inventory=inventory(host, endpoint),
        extravars=dict(extra_vars),
        envvars=_settings(data_dir),
        quiet=True,
        event_handler=progress,
        cancel_callback=cancel.is_set,
        settings={"suppress_ansible_output": True},
    )
    try:
        while thread.is_alive():
            thread.join(0.5)
    except BaseException:
        cancel.set()
        thread.join(30)
        raise
    progress.seconds = round(time.monotonic() - started, 2)
    _check(runner, progress, playbook)
    return progress


def _check(runner: Any, progress: Progress, playbook: Path) -> None:
    if runner.status == "successful":
        return
    if progress.failures:
        raise StageFailed(
            f"playbook {playbook}: {progress.failures[0]}",
            hint=f"the full Ansible output is in {progress.log}",
        )
    raise StageFailed(
        f"playbook {playbook} ended with status {runner.status} (rc {runner.rc})",
        hint=f"the full Ansible output is in {progress.log}",
    )
