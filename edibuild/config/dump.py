"""Show a loaded project: the merged configuration (like edi's --config) and its plugins."""

from __future__ import annotations

import yaml

from edibuild.config.project import Project
from edibuild.data import mapping


def dump_config(project: Project) -> str:
    """Return the merged configuration as YAML, headed by the project's name and file."""
    body = yaml.safe_dump(
        dict(project.sections), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return f"# project {project.name} ({project.file})\n{body}"


def describe_plugins(project: Project) -> str:
    """Return one line per plugin: section/key, resolved file and where it was set."""
    rows: list[tuple[str, str, str]] = []
    if project.bootstrap.keyring is not None:
        where = project.where("bootstrap", "keyring")
        rows.append(("bootstrap/keyring", str(project.bootstrap.keyring), str(where)))
    for section in ("lxd_profiles", "playbooks", "postprocessing"):
        nodes = mapping(project.sections.get(section))
        for key, node in nodes.items():
            if isinstance(node, dict) and "path" in node:
                where = project.where(section, key, "path")
                rows.append((f"{section}/{key}", str(node["path"]), str(where)))
    if not rows:
        return f"# project {project.name} uses no plugins\n"
    width = max(len(row[0]) for row in rows)
    lines = [f"{name:<{width}}  {path}  (set at {where})" for name, path, where in rows]
    return f"# plugins of project {project.name}\n" + "\n".join(lines) + "\n"
