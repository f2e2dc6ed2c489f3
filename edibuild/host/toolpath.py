"""Where edibuild finds the programs it runs: its own virtualenv's `bin` first, then PATH.

edibuild runs inside its virtualenv (`.venv/bin/doit`), but a user's shell rarely has
`.venv/bin` on its PATH; ansible-playbook (and any other Python tool of ours) must come
from the virtualenv whatever the caller's PATH holds, and never from a copy someone
installed by hand elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

# The directory of the interpreter running edibuild: the virtualenv's bin when edibuild
# runs from one (`sys.executable` is the venv's `python`, not the interpreter it links to).
OWN_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def search_path(environ: Mapping[str, str] | None = None) -> str:
    """The PATH every command edibuild starts gets: its own bin first, then the caller's."""
    environ = os.environ if environ is None else environ
    parts = [os.fspath(OWN_BIN), *(environ.get("PATH") or SYSTEM_PATH).split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


def find(command: str) -> Path | None:
    """Return the program `command` as edibuild would run it, or None when it is missing."""
    found = shutil.which(command, path=search_path())
    return Path(found) if found is not None else None


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a command edibuild starts: ours, `extra` on top, our PATH first."""
    env = dict(os.environ)
    env.update(extra or {})
    env["PATH"] = search_path(env)
    return env


def not_found(command: str) -> str:
    """Say that a program is missing and where edibuild looked for it."""
    return f"{command} not found (looked in {search_path().replace(os.pathsep, ', ')})"
