"""Which projects a `doit run` names, so dodo.py loads only those (fast with many projects).

`doit image:NAME` (the run command) needs the tasks of NAME alone: a project's tasks
read only its own artifacts and run after its own tasks. edibuild's `run` command
records the names it was given before doit loads dodo.py; `wanted` turns them into the
projects to load, or None (load every project) whenever a name could stand for tasks
of other projects too: a group (`image`), a helper without a project (`trim`), a glob,
a prefix or a misspelt name (whose error lists every project).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

GLOB = frozenset("*?[")

_requested: tuple[str, ...] | None = None


def request(names: Sequence[str]) -> None:
    """Record the task names (and task options) given to `doit run`."""
    global _requested
    _requested = tuple(names)


def forget() -> None:
    """No selection: the next load takes every project (other commands, tests)."""
    global _requested
    _requested = None


def wanted(stems: Collection[str], names: Sequence[str] | None = None) -> set[str] | None:
    """The projects the names need, all of them existing projects; None for every project."""
    names = _requested if names is None else names
    if not names:
        return None
    found: set[str] = set()
    for name in names:
        if name.startswith("-") or "=" in name:
            continue  # a task option (`--budget`) or a variable assignment
        base, colon, project = name.partition(":")
        if not colon or not base or GLOB & set(name) or project not in stems:
            return None
        found.add(project)
    return found or None
