"""What edibuild tells its doit hooks: stages, helper commands, projects, explanations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Explanation:
    """A task's state in words: up to date or not, and the reasons, for `doit info`."""

    up_to_date: bool
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    """The names doit's listing and info hooks show, with their one-line docs."""

    stages: Sequence[tuple[str, str]] = ()  # pipeline order
    helpers: Sequence[tuple[str, str]] = ()
    projects: Mapping[str, str] = field(default_factory=dict)  # name -> description
    explain: Callable[[str], Explanation | None] = lambda task: None


_current = Catalog()


def current() -> Catalog:
    """The catalog of the projects doit loaded (empty before dodo.py ran)."""
    return _current


def publish(catalog: Catalog) -> None:
    """Make `catalog` the one the hooks read (dodo.py calls this once it loaded)."""
    global _current
    _current = catalog
