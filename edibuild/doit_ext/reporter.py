"""doit's console reporter, quiet about the tasks whose output is the answer itself.

`doit config:NAME > merged.yml` must be YAML: doit's `.  config:NAME` title line would
come first. Tasks with `meta: {"edibuild_title": False}` print no title.
"""

from __future__ import annotations

from typing import Any

from doit.reporter import ConsoleReporter


class Reporter(ConsoleReporter):  # type: ignore[misc]
    """ConsoleReporter without the title line of answer-printing tasks."""

    def execute_task(self, task: Any) -> None:
        """Print the task's title unless it asks for none."""
        if (task.meta or {}).get("edibuild_title", True):
            super().execute_task(task)
