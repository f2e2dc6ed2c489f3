"""Stage import: turn the bootstrap rootfs tarball into an LXD image.

Input: bootstrap/rootfs (.tar.zst). Output: `image` (lxd-image.json: fingerprint,
alias, architecture). The image is aliased `edibuild-<key[:16]>` and reused when an
image with that alias exists. A second alias `edibuild-project-<project>` marks the
image each project uses, so `clean_external` finds it and an image that no project
uses any more is deleted when its project moves on to a new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edibuild.lazy import lazy_import
from edibuild.lxd import names, probe
from edibuild.project import Json, Project
from edibuild.run import say
from edibuild.stage import Stage, StageContext

if TYPE_CHECKING:
    import pylxd

    from edibuild.lxd import client as lxd
else:
    lxd = lazy_import("edibuild.lxd.client")


def image_alias(key: str) -> str:
    """Return the LXD alias of the image imported for stage key `key`."""
    return names.image_alias(key)


def project_alias(project: Project) -> str:
    """Return the alias that marks the image `project` currently uses."""
    return names.project_alias(project.name)


def _outputs(project: Project) -> Mapping[str, str]:
    return {"image": "lxd-image.json"}


def _config(project: Project) -> Json:
    return {"architecture": project.bootstrap.architecture}


def _properties(ctx: StageContext) -> dict[str, str]:
    boot = ctx.project.bootstrap
    return {
        "os": "debian",
        "release": boot.suite,
        "architecture": boot.architecture,
        "description": f"edibuild {ctx.project.name} {boot.suite} {boot.architecture} "
        f"(key {ctx.key[:16]})",
    }


def build(ctx: StageContext) -> Json:
    """Import the rootfs as an LXD image, or reuse the one imported for this key."""
    client = lxd.connect(ctx.project.section("lxd"))
    alias = image_alias(ctx.key)
    props = _properties(ctx)
    arch = lxd.lxd_architecture(client, ctx.project.bootstrap.architecture)
    existing = lxd.image_by_alias(client, alias)
    if existing is not None:
        say(f"import: reusing LXD image {alias}")
        fingerprint = str(existing.fingerprint)
    else:
        say(f"import: importing {ctx.input('bootstrap', 'rootfs').name} as LXD image {alias}")
        meta = lxd.metadata_tarball(arch, ctx.source_date_epoch, props)
        rootfs = ctx.input("bootstrap", "rootfs")
        fingerprint = lxd.import_image(client, rootfs, meta, alias, props["description"])
    _mark_project_image(client, ctx.project, fingerprint)
    record = {"fingerprint": fingerprint, "alias": alias, "architecture": arch}
    ctx.output("image").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return {**record, "reused": existing is not None}


def _mark_project_image(client: pylxd.Client, project: Project, fingerprint: str) -> None:
    """Point the project alias at `fingerprint`; delete the project's old image if unused."""
    name = project_alias(project)
    old = lxd.image_by_alias(client, name)
    if old is not None and old.fingerprint == fingerprint:
        return
    if old is not None:
        old.delete_alias(name)
        _delete_if_orphan(client, old.fingerprint)
    client.images.get(fingerprint).add_alias(name, f"image used by edibuild {project.name}")


def _delete_if_orphan(client: pylxd.Client, fingerprint: str) -> None:
    image: Any = client.images.get(fingerprint)
    if not any(a["name"].startswith(names.PROJECT_ALIAS) for a in image.aliases):
        lxd.delete_image(client, fingerprint)


def intact(project: Project, info: Mapping[str, Json]) -> bool:
    """True while the image this stage imported is still in LXD."""
    return probe.image_exists(project.section("lxd"), str(info.get("fingerprint", "")))


def clean_external(project: Project) -> None:
    """Delete the LXD image the project uses, unless another project uses it too."""
    client = lxd.connect(project.section("lxd"))
    name = project_alias(project)
    image = lxd.image_by_alias(client, name)
    if image is not None:
        image.delete_alias(name)
        _delete_if_orphan(client, image.fingerprint)


STAGE = Stage(
    name="import",
    doc="Import the bootstrapped root file system as an LXD image",
    upstream=("bootstrap",),
    outputs=_outputs,
    config=_config,
    build=build,
    intact=intact,
    clean_external=clean_external,
)
