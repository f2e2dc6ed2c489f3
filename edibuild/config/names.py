"""The name rules: which strings may name a project, a node, a stage or an output.

Names end up in task names (`STAGE:PROJECT`), file names under the artifact and cache
directories, scratch directory names and LXD object names, so each kind follows one rule,
checked here and nowhere else:

- NAME `^[A-Za-z0-9][A-Za-z0-9._-]*$`, at most 100 characters (so never `.`, `..` or a
  hidden file, never a `/`): project names (the file stem of `projects/NAME.yml`), the
  node keys of `playbooks`, `lxd_profiles` and `postprocessing`, and the file names of a
  user stage's outputs.
- WORD: a NAME without dots (`.` separates STAGE.OUTPUT): user stage names (a
  postprocessing key without its `NN_` prefix) and the output names of a user stage.
- PARTITION_KEY `^(\\d+)_([a-z][a-z0-9_]*)$`: layout partition keys (`20_root`); the name
  after the number names the partition's image (`root.ext4`).

A user stage must not take the name of a built-in stage, a helper task or a doit command
(RESERVED_TASKS), and its output files must not take a file another stage writes, a
manifest, `log` or `.state` (checked in edibuild/engine/userstage.py against the project).
"""

from __future__ import annotations

import re

from edibuild.errors import ConfigError, Location

NAME_MAX = 100
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
PARTITION_KEY = re.compile(r"(\d+)_([a-z][a-z0-9_]*)")
# Tasks that are not stages (edibuild/engine/plan.py creators) and doit's own commands: a
# stage with one of these names would clash with the task or be shadowed by the command.
HELPER_TASKS = ("image", "why", "trim", "config", "plugins", "postprocessing", "_preflight")
DOIT_COMMANDS = (
    "auto", "clean", "dumpdb", "forget", "help", "ignore", "info", "list", "reset-dep",
    "run", "strace", "tabcompletion",
)  # fmt: skip
RESERVED_TASKS = HELPER_TASKS + DOIT_COMMANDS
# Files of artifacts/<project>/ that are not stage outputs.
RESERVED_FILES = ("log", ".state")
MANIFEST_SUFFIX = ".manifest.json"


def is_name(text: object) -> bool:
    """True when `text` follows the NAME rule."""
    return isinstance(text, str) and len(text) <= NAME_MAX and NAME.fullmatch(text) is not None


def is_word(text: object) -> bool:
    """True when `text` follows the WORD rule (a NAME without dots)."""
    return isinstance(text, str) and len(text) <= NAME_MAX and WORD.fullmatch(text) is not None


def check_name(
    text: object, what: str, *, location: Location | None, key: str | None, word: bool = False
) -> str:
    """Return `text` if it is a NAME (a WORD with `word`); else raise a ConfigError."""
    ok = is_word(text) if word else is_name(text)
    if ok:
        assert isinstance(text, str)
        return text
    allowed = "letters, digits, _ and -" if word else "letters, digits, '.', '_' and '-'"
    raise ConfigError(
        f"{what} {text!r} is not a valid name",
        location=location,
        key=key,
        hint=f"use {allowed}, starting with a letter or digit, at most {NAME_MAX} characters",
    )
