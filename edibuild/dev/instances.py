"""The instances of an LXD backend, and whether the dev container's name is this project's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from edibuild.config.project import Project
from edibuild.errors import StageFailed
from edibuild.lxd import names

if TYPE_CHECKING:  # the Protocol classes cost ~1 ms to make; planning needs only names here
    from edibuild.lxd.protocol import ContainerBackend, Instance


def all_instances(backend: ContainerBackend) -> Iterator[Instance]:
    """Every instance of the backend (one removed meanwhile is skipped)."""
    for name in backend.instance_names(""):
        box = backend.instance(name)
        if box is not None:
            yield box


def ours(backend: ContainerBackend, name: str, project: Project) -> bool:
    """True if container `name` was made by edibuild for this project (False if absent);
    a container of the same name that edibuild did not make is never touched."""
    box = backend.instance(name)
    if box is None:
        return False
    if not names.belongs_to(box.config, project.name):
        raise StageFailed(
            f"an LXD container named {name} exists and edibuild did not make it for {project.name}",
            hint="set another `container: {name: ...}` in the project, or remove that container",
        )
    return True


def container_name(project: Project) -> str:
    """The dev container's name: the project's choice, or edibuild-dev-<project>."""
    return project.container.name or names.dev_container(project.name)
