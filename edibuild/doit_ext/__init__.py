"""Close doit's traps for users (edibuild pins doit 0.37.0, whose internals these wrap).

- names: unique-prefix task names, globs in every command, unknown projects listed;
- commands: doit's clean/forget/ignore/reset-dep/list/info with options after task
  names, a project-aware `list` and `info` in words (registered as doit plugins in
  pyproject.toml: doit parses options before it loads dodo.py);
- reporter: no doit title line above answers (`doit config:NAME > merged.yml`);
- signals: SIGTERM behaves like Ctrl-C, an interrupt is one line;
- creators: doit orders the task creators without tokenizing their source.
dodo.py installs the hooks and publishes the catalog of loaded projects.
"""

from __future__ import annotations

from edibuild.doit_ext import creators, names, signals
from edibuild.doit_ext.catalog import Catalog, Explanation, publish

__all__ = ["Catalog", "Explanation", "install", "publish"]

_installed = False


def install() -> None:
    """Install the hooks once (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    creators.install()
    names.install()
    signals.install()
