"""Task names as users type them: unique prefixes, globs, and a helpful unknown name.

doit 0.37 rejects `doit image:pi3` ("not a task") and crashes on globs in `forget` and
`info`. Here a unique prefix selects its task, an ambiguous one lists the candidates, a
glob works in every command, and `doit why:nosuch` lists the projects there are.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, MutableSequence
from typing import Any

import doit.cmd_base
import doit.cmd_clean
import doit.cmd_forget
import doit.cmd_ignore
import doit.cmd_list
import doit.cmd_resetdep
import doit.control
from doit.exceptions import InvalidCommand

from edibuild.doit_ext import catalog


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


def unknown(name: str, names: Iterable[str]) -> InvalidCommand:
    """The error for a name that matches nothing: name the projects when a project is wrong."""
    base, colon, project = name.partition(":")
    known = list(names)
    projects = catalog.current().projects
    if colon and any(n.startswith(f"{base}:") for n in known) and project not in projects:
        listing = "\n    ".join(sorted(projects)) or "(none: add projects/NAME.yml)"
        return InvalidCommand(f'there is no project "{project}"; the projects are:\n    {listing}')
    return InvalidCommand(f'"{name}" matches no task (see `doit list`).')


def expand_in_place(tasks: Any, name_list: MutableSequence[str] | None, globs: bool) -> None:
    """Replace each name in `name_list` by the task names it stands for."""
    if not name_list:
        return
    result: list[str] = []
    for name in name_list:
        if not globs and ("*" in name or "?" in name):
            result.append(name)
            continue
        matches = resolve_name(name, tasks)
        if not matches or (matches == [name] and name not in tasks and _looks_like_task(name)):
            raise unknown(name, tasks)
        result.extend(matches)
    name_list[:] = result


def _looks_like_task(name: str) -> bool:
    """True for `BASE:NAME`, which can only be a task (never a target file or variable)."""
    return ":" in name and "/" not in name and "=" not in name and not name.startswith("-")


def _check_tasks_exist(tasks: Any, name_list: Any, skip_wildcard: bool = False) -> None:
    expand_in_place(tasks, name_list, globs=not skip_wildcard)
    _original_check(tasks, name_list, skip_wildcard=skip_wildcard)


_original_check = doit.cmd_base.check_tasks_exist
_original_filter = doit.control.TaskControl._process_filter


def _process_filter(self: Any, task_selection: list[str]) -> Any:
    selection = list(task_selection)
    expand_in_place(self.tasks, selection, globs=False)
    return _original_filter(self, selection)


def install() -> None:
    """Resolve prefixes and globs in every command that takes task names."""
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
