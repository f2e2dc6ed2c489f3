"""The dev container's LXD image: the configured rootfs imported once, older ones dropped."""

from __future__ import annotations

from pathlib import Path

from edibuild.config.project import Project
from edibuild.lxd import names
from edibuild.lxd.protocol import ContainerBackend
from edibuild.run import say
from edibuild.store.fsutil import sha256_file


def ensure(backend: ContainerBackend, tarball: Path, project: Project) -> str:
    """Import the configured rootfs (once) under the project's dev alias; return it."""
    fingerprint = sha256_file(tarball)  # LXD names a unified image by its file's sha256
    alias = names.dev_image_alias(project.name, fingerprint)  # one alias per image
    image = backend.image(fingerprint)
    if image is None:
        say(f"container: importing the configured root file system as LXD image {alias}")
        backend.import_unified(tarball)
        image = backend.image(fingerprint)
    if image is None or alias not in image.aliases:
        backend.add_alias(fingerprint, alias, f"edibuild dev container image of {project.name}")
    return fingerprint


def drop_old(backend: ContainerBackend, keep: str, project: Project) -> list[str]:
    """Delete the project's earlier dev-container images (never anything else)."""
    pattern = names.dev_image_pattern(project.name)
    removed = []
    for image in backend.images():
        mine = [a for a in image.aliases if pattern.match(a)]
        if image.fingerprint != keep and mine:
            backend.delete_image(image.fingerprint)
            removed.extend(mine)
    return removed
