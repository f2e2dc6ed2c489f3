"""Project files -> validated Project: Jinja2 rendering, includes, overlays, merge, checks.

Public API: `load_project`, `load_projects`, `dump_config`, `describe_plugins`, `Host`.
Every problem raises edibuild.errors.ConfigError naming the file, line, key and a hint.
"""

from __future__ import annotations

from edibuild.config.dump import describe_plugins, dump_config
from edibuild.config.host import Host
from edibuild.config.load import load_project, load_projects

__all__ = ["Host", "describe_plugins", "dump_config", "load_project", "load_projects"]
