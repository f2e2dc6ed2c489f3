"""edibuild's versions of doit's task-name commands, registered as doit plugins.

pyproject.toml registers these classes under doit's `doit.COMMAND` entry points, which
take the place of doit's own commands of the same names (doit reads plugins after its
core commands, and parses a command's options before it loads dodo.py, so this is the
only way to change how options are read):

- options may come after task names (`doit clean image:NAME --forget`): doit's getopt
  stopped at the first task name ("'--forget' is not a task"); `doit run` keeps doit's
  rule, since what follows a task there are the task's own options;
- `doit list` shows stages, commands and projects; `doit list NAME` one project's tasks;
- `doit info TASK` explains a stage task in words (and, like doit, exits 1 when it would
  run) instead of printing the repr of its up-to-date checks;
- `doit run` (and `doit TASK`) loads only the projects its task names need
  (edibuild/doit_ext/selection.py), so a no-op costs the same with 1 or 50 projects;
- a bare `doit list` prints the catalog without building doit's task objects.
"""

from __future__ import annotations

import getopt
from collections.abc import Sequence
from typing import Any

import doit.cmd_clean
import doit.cmd_forget
import doit.cmd_ignore
import doit.cmd_info
import doit.cmd_list
import doit.cmd_resetdep
import doit.cmd_run
from doit.cmdparse import CmdParse, CmdParseError
from doit.exceptions import InvalidCommand

from edibuild.doit_ext import catalog, names, selection


class AnywhereCmdParse(CmdParse):  # type: ignore[misc]
    """A doit command parser that reads options before, between and after positionals."""

    def parse_only(self, in_args: list[str], params: Any = None) -> tuple[Any, list[str]]:
        """Parse like doit, with GNU getopt's argument order (options anywhere)."""
        params = params if params else {}
        try:
            pairs, positional = getopt.gnu_getopt(in_args, self.get_short(), self.get_long())
        except getopt.GetoptError as error:
            raise CmdParseError(f"{error} (options: {self.options})") from None
        for flag, value in pairs:
            option, inverse = self.get_option(flag)
            if option.type is bool:
                params[option.name] = not inverse
            elif option.type is list:
                params[option.name].append(value)
            else:
                params[option.name] = option.str2type(value)
        return params, positional


class _OptionsAnywhere:
    """Mixin: the command's parser is an AnywhereCmdParse."""

    _cmdparser: Any
    config_vals: Any
    get_options: Any  # doit's command class provides it

    @property
    def cmdparser(self) -> Any:
        """The option parser of this command (options anywhere on the line)."""
        if not self._cmdparser:
            self._cmdparser = AnywhereCmdParse(self.get_options())
            self._cmdparser.overwrite_defaults(self.config_vals)
        return self._cmdparser


class Clean(_OptionsAnywhere, doit.cmd_clean.Clean):  # type: ignore[misc]
    """doit clean, with options anywhere."""


class Forget(_OptionsAnywhere, doit.cmd_forget.Forget):  # type: ignore[misc]
    """doit forget, with options anywhere."""


class Ignore(_OptionsAnywhere, doit.cmd_ignore.Ignore):  # type: ignore[misc]
    """doit ignore, with options anywhere."""


class ResetDep(_OptionsAnywhere, doit.cmd_resetdep.ResetDep):  # type: ignore[misc]
    """doit reset-dep, with options anywhere."""


class Run(doit.cmd_run.Run):  # type: ignore[misc]
    """doit run (also `doit TASK`): loads only the projects the task names need."""

    def execute(self, params: Any, args: list[str]) -> Any:
        """Tell dodo.py which tasks were asked for, then run them as doit does."""
        selection.request(args)
        try:
            return super().execute(params, args)
        finally:
            selection.forget()


def overview(cat: catalog.Catalog) -> str:
    """The text of a bare `doit list`: stages in order, commands, projects."""
    names_ = [n for n, _ in (*cat.stages, *cat.helpers)] + list(cat.projects)
    width = max((len(n) for n in names_), default=10) + 3
    lines = ["Stages, in pipeline order (each a task STAGE:PROJECT):"]
    lines += [f"  {name:<{width}}{doc}" for name, doc in cat.stages]
    lines += ["", "Commands (COMMAND:PROJECT):"]
    lines += [f"  {name:<{width}}{doc}" for name, doc in cat.helpers]
    lines += ["", "Projects (doit image:NAME builds one; doit list NAME shows its tasks):"]
    lines += [
        f"  {name:<{width}}{description or '(no description)'}"
        for name, description in sorted(cat.projects.items())
    ]
    if not cat.projects:
        lines.append("  (none yet: add projects/NAME.yml)")
    return "\n".join(lines) + "\n"


PLAIN_LIST_OPTIONS = ("subtasks", "status", "private", "list_deps", "template")


class List(_OptionsAnywhere, doit.cmd_list.List):  # type: ignore[misc]
    """doit list that browses projects: `doit list`, `doit list NAME`."""

    def execute(self, params: Any, args: list[str]) -> Any:
        """A bare `doit list` prints the catalog as soon as dodo.py has loaded the projects:
        doit's task objects and state database, a third of its time, are not needed."""
        if args or any(params.get(name) for name in PLAIN_LIST_OPTIONS):
            return super().execute(params, args)
        self.loader.setup(params)
        cat = catalog.current()
        if not (cat.stages or cat.projects):
            return super().execute(params, args)
        self.outstream.write(overview(cat))
        return 0

    def _execute(
        self,
        subtasks: bool = False,
        quiet: bool = True,
        status: bool = False,
        private: bool = False,
        list_deps: bool = False,
        template: str | None = None,
        sort: str = "name",
        pos_args: Sequence[str] | None = None,
    ) -> Any:
        cat = catalog.current()
        plain = not (subtasks or status or private or list_deps or template)
        if plain and not pos_args and (cat.stages or cat.projects):
            self.outstream.write(overview(cat))
            return 0
        expanded: list[str] = []
        for name in pos_args or ():
            if name in cat.projects:
                expanded += sorted(t.name for t in self.task_list if t.name.endswith(f":{name}"))
            else:
                expanded.append(name)
        return super()._execute(
            subtasks, quiet, status, private, list_deps, template, sort, expanded or pos_args
        )


class Info(_OptionsAnywhere, doit.cmd_info.Info):  # type: ignore[misc]
    """doit info in words for stage tasks; globs and prefixes select the one task."""

    def _execute(self, pos_args: list[str], hide_status: bool = False) -> Any:
        expanded = list(pos_args)
        names.expand_in_place([t.name for t in self.task_list], expanded, globs=True)
        if len(expanded) > 1:
            listing = "\n    ".join(expanded)
            raise InvalidCommand(f"`info` explains one task; these match:\n    {listing}")
        explanation = catalog.current().explain(expanded[0]) if expanded else None
        if explanation is None:
            return super()._execute(expanded, hide_status=hide_status)
        self.outstream.write("\n".join(explanation.lines) + "\n")
        return 0 if explanation.up_to_date or hide_status else 1
