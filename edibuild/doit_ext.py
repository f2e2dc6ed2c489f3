"""Close doit's traps for users: unique-prefix task names, globs in forget/info, SIGTERM.

doit 0.37 rejects `doit image:pi3` ("not a task") and crashes on globs in `forget` and
`info`; a SIGTERM kills it without saving the state of tasks that finished. These hooks
are installed from dodo.py (doit is pinned to 0.37.0, whose internals they wrap).
"""

from __future__ import annotations

import fnmatch
import signal
import sys
from collections.abc import Iterable, MutableSequence
from types import FrameType
from typing import Any

import doit.cmd_base
import doit.cmd_clean
import doit.cmd_forget
import doit.cmd_ignore
import doit.cmd_info
import doit.cmd_list
import doit.cmd_resetdep
import doit.control
from doit.exceptions import InvalidCommand

_installed = False


def resolve_name(name: str, names: Iterable[str]) -> list[str]:
    """Return the task names `name` stands for: itself, a glob's matches, or a unique prefix."""
    known = list(names)
    if name in known or "=" in name or name.startswith("-"):
        return [name]
    if "*" in name or "?" in name:
        return [n for n in known if fnmatch.fnmatchcase(n, name)]
    candidates = [n for n in known if n.startswith(name) and not n.startswith("_")]
    if len(candidates) == 1:
        return candidates
    if candidates:
        listing = "\n    ".join(sorted(candidates))
        raise InvalidCommand(f'"{name}" is ambiguous; it could be:\n    {listing}')
    return [name]


def _expand_in_place(tasks: Any, name_list: MutableSequence[str] | None, globs: bool) -> None:
    if not name_list:
        return
    result: list[str] = []
    for name in name_list:
        if not globs and ("*" in name or "?" in name):
            result.append(name)
            continue
        matches = resolve_name(name, tasks)
        if not matches:
            raise InvalidCommand(f'"{name}" matches no task (see `doit list --all`).')
        result.extend(matches)
    name_list[:] = result


def _check_tasks_exist(tasks: Any, name_list: Any, skip_wildcard: bool = False) -> None:
    _expand_in_place(tasks, name_list, globs=not skip_wildcard)
    _original_check(tasks, name_list, skip_wildcard=skip_wildcard)


_original_check = doit.cmd_base.check_tasks_exist
_original_filter = doit.control.TaskControl._process_filter


def _process_filter(self: Any, task_selection: list[str]) -> Any:
    selection = list(task_selection)
    _expand_in_place(self.tasks, selection, globs=False)
    return _original_filter(self, selection)


_original_info = doit.cmd_info.Info._execute


def _info_execute(self: Any, pos_args: list[str], hide_status: bool = False) -> Any:
    names = [t.name for t in self.task_list]
    expanded = list(pos_args)
    _expand_in_place(names, expanded, globs=True)
    if len(expanded) > 1:
        listing = "\n    ".join(expanded)
        raise InvalidCommand(f"`info` explains one task; these match:\n    {listing}")
    return _original_info(self, expanded, hide_status=hide_status)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into Ctrl-C: doit then saves finished tasks and our builds clean up.
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def install() -> None:
    """Install the hooks once (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    for module in (
        doit.cmd_clean,
        doit.cmd_forget,
        doit.cmd_ignore,
        doit.cmd_list,
        doit.cmd_resetdep,
        doit.cmd_base,
    ):
        module.check_tasks_exist = _check_tasks_exist
    doit.control.TaskControl._process_filter = _process_filter
    doit.cmd_info.Info._execute = _info_execute
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    sys.excepthook = _quiet_interrupt(sys.excepthook)


def _quiet_interrupt(previous: Any) -> Any:
    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print(
                "edibuild: interrupted; finished tasks are saved, partial work removed",
                file=sys.stderr,
            )
            return
        previous(kind, value, tb)

    return hook
