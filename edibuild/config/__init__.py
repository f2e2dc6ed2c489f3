"""Project files -> validated Project: Jinja2 rendering, includes, overlays, merge, checks.

Public API: `load_project`, `load_projects`, `dump_config`, `describe_plugins`, `Host`.
Every problem raises edibuild.errors.ConfigError naming the file, line, key and a hint.
The names are imported on first use, so the section modules that the Project is made of
(edibuild/config/sections.py) can use this package's readers without an import circle.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "Host": "edibuild.config.host",
    "describe_plugins": "edibuild.config.dump",
    "dump_config": "edibuild.config.dump",
    "load_project": "edibuild.config.load",
    "load_projects": "edibuild.config.load",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
