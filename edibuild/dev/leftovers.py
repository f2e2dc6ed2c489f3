"""What earlier runs left: half-made replacements, kept containers, what `doit clean` removes."""

from __future__ import annotations

from edibuild.config.project import Project
from edibuild.dev import swap
from edibuild.dev.instances import all_instances, container_name, ours
from edibuild.lxd import names
from edibuild.lxd.protocol import ContainerBackend


def remove_leftovers(backend: ContainerBackend, project: Project) -> list[str]:
    """Remove half-made replacements of the dev container whose build process is gone."""
    removed = []
    prefix = swap.temporary_prefix(container_name(project))
    for name in backend.instance_names(prefix):
        box = backend.instance(name)
        if box is None or not names.belongs_to(box.config, project.name):
            continue
        if names.mark_gone(box.config.get(names.OWNER_LABEL, "")):
            backend.remove_instance(name)
            removed.append(name)
    return removed


def kept_containers(backend: ContainerBackend, project: Project) -> list[str]:
    """The project's earlier containers that edibuild kept (the developer's now)."""
    return [
        box.name
        for box in all_instances(backend)
        if box.config.get(swap.KEPT_LABEL) == project.name
    ]


def doomed(backend: ContainerBackend, project: Project) -> list[str]:
    """What `doit clean --forget` removes: the dev container and its half-made replacements."""
    name = container_name(project)
    prefix = swap.temporary_prefix(name)
    found = [name] if ours(backend, name, project) else []
    for other in backend.instance_names(prefix):
        box = backend.instance(other)
        if box is not None and names.belongs_to(box.config, project.name):
            found.append(other)
    return found
