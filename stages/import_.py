"""Stage import: turn the bootstrap rootfs tarball into an LXD image.

Input: bootstrap/rootfs (.tar.zst). Output: `image` (lxd-image.json: fingerprint,
alias, architecture). The image is aliased `edibuild-<key[:16]>` and reused when an
image with that alias exists. A second alias `edibuild-project-<project>-<checkout>` marks
the image each project uses in each checkout (its artifact folder), so `clean_external`
finds it and an image that no project of any checkout uses any more is deleted when its
project moves on to a new one. Two checkouts of one project on different keys (a branch
beside main) each keep their own image instead of deleting each other's at every run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext
from edibuild.lazy import lazy_import
from edibuild.lxd import names, probe
from edibuild.lxd.errors import Refused
from edibuild.run import say
from edibuild.store.fsutil import sha256_file
from edibuild.store.workspace import Workspace

if TYPE_CHECKING:
    from edibuild.lxd import client, metadata
    from edibuild.lxd.protocol import ContainerBackend
else:  # loaded when a build needs them, not at every doit start (tarfile, pylxd)
    client = lazy_import("edibuild.lxd.client")
    metadata = lazy_import("edibuild.lxd.metadata")


def image_alias(key: str) -> str:
    """Return the LXD alias of the image imported for stage key `key`."""
    return names.image_alias(key)


def project_alias(project: Project) -> str:
    """Return the alias that marks the image `project` currently uses in this checkout."""
    return names.project_alias(project.name, Workspace.from_environment().artifacts_dir)


def _drop_legacy_alias(backend: ContainerBackend, project: Project) -> None:
    """Move off the checkout-less alias of earlier versions (this checkout set it, most likely)."""
    legacy = names.project_alias(project.name)
    old = backend.image_by_alias(legacy)
    if old is not None:
        backend.remove_alias(legacy)
        _delete_if_orphan(backend, old.fingerprint)


def outputs(project: Project) -> Mapping[str, str]:
    """One output: the record of the imported LXD image."""
    return {"image": "lxd-image.json"}


def config(project: Project) -> Json:
    """The architecture the image is labelled with."""
    return {"architecture": project.bootstrap.architecture}


def _properties(ctx: StageContext) -> dict[str, str]:
    boot = ctx.project.bootstrap
    return {
        "os": "debian",
        "release": boot.suite,
        "architecture": boot.architecture,
        # Nothing project's own: the image (and so its fingerprint) follows the key alone,
        # whichever of the projects sharing the key imports it first.
        "description": f"edibuild {boot.suite} {boot.architecture} (key {ctx.key[:16]})",
    }


def _import(ctx: StageContext, backend: ContainerBackend, alias: str, arch: str) -> str:
    """Import the rootfs as image `alias`; return its fingerprint (theirs if a race lost)."""
    rootfs = ctx.input("bootstrap", "rootfs")
    say(f"import: importing {rootfs.name} as LXD image {alias}")
    props = _properties(ctx)
    meta = metadata.metadata_tarball(arch, ctx.source_date_epoch, props)
    fingerprint = split_fingerprint(meta, rootfs)
    if backend.image(fingerprint) is None:
        fingerprint = backend.import_image(rootfs, meta)
    else:  # uploaded by a run killed before it named the image: LXD refuses a second upload
        say(f"import: LXD already has the image {fingerprint[:12]} (without its alias): naming it")
    try:
        backend.add_alias(fingerprint, alias, props["description"])
    except Refused:
        # Another build imported the same key at the same time: keep theirs.
        existing = backend.image_by_alias(alias)
        if existing is None:
            raise
        return existing.fingerprint
    return fingerprint


def split_fingerprint(metadata: bytes, rootfs: Path) -> str:
    """LXD's fingerprint of a split image: the sha256 of its metadata, then its rootfs."""
    return sha256_file(rootfs, prefix=metadata)


def build(ctx: StageContext) -> Json:
    """Import the rootfs as an LXD image, or reuse the one imported for this key."""
    backend = client.connect(ctx.project.lxd.connection)
    alias = image_alias(ctx.key)
    arch = backend.architecture(ctx.project.bootstrap.architecture)
    existing = backend.image_by_alias(alias)
    if existing is not None:
        say(f"import: reusing LXD image {alias}")
        fingerprint = existing.fingerprint
    else:
        fingerprint = _import(ctx, backend, alias, arch)
    _mark_project_image(backend, ctx.project, fingerprint)
    record = {"fingerprint": fingerprint, "alias": alias, "architecture": arch}
    ctx.output("image").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return {**record, "reused": existing is not None}


def _mark_project_image(backend: ContainerBackend, project: Project, fingerprint: str) -> None:
    """Point the project alias at `fingerprint`; delete the project's old image if unused."""
    where = Workspace.from_environment().artifacts_dir
    name = names.project_alias(project.name, where)
    old = backend.image_by_alias(name)
    if old is None or old.fingerprint != fingerprint:
        if old is not None:
            backend.remove_alias(name)
        backend.add_alias(fingerprint, name, f"image used by edibuild {project.name} in {where}")
        if old is not None:
            _delete_if_orphan(backend, old.fingerprint)
    _drop_legacy_alias(backend, project)


def _delete_if_orphan(backend: ContainerBackend, fingerprint: str) -> None:
    """Delete the image unless some project's alias still points at it."""
    image = backend.image(fingerprint)
    if image is not None and not any(a.startswith(names.PROJECT_ALIAS) for a in image.aliases):
        backend.delete_image(fingerprint)


def intact(project: Project, info: Mapping[str, Json]) -> bool:
    """True while the image this stage imported is still in LXD."""
    return probe.image_exists(project.lxd.connection, str(info.get("fingerprint", "")))


def clean_external(project: Project) -> None:
    """Delete the LXD image the project uses, unless another project uses it too."""
    clean_external_with(client.connect(project.lxd.connection), project)


def clean_external_with(backend: ContainerBackend, project: Project) -> None:
    """clean_external on a given backend."""
    _drop_legacy_alias(backend, project)
    name = project_alias(project)
    image = backend.image_by_alias(name)
    if image is not None:
        backend.remove_alias(name)
        _delete_if_orphan(backend, image.fingerprint)


STAGE = Stage(
    name="import",
    doc="Import the bootstrapped root file system as an LXD image",
    upstream=("bootstrap",),
    outputs=outputs,
    config=config,
    build=build,
    intact=intact,
    clean_external=clean_external,
)
