"""container: a running LXD development container that matches the target's root file system.

Reads: the configured root file system (configure's LXD image tarball) and the project's
optional `container` section:

    container:
      name: edi-pi-dev            # default: edibuild-dev-<project>
      share:                      # optional host folder shared into the container
        source: /home/me/edibuild-workspace
        path: /home/edi/edibuild-workspace

Writes: `dev-container.json` (container name, image fingerprint). The container is
external state: it is replaced (with a note) when its inputs change, removed by
`doit clean container:NAME --forget`, and is not part of `image:NAME`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext
from edibuild.errors import StageFailed
from edibuild.lazy import lazy_import
from edibuild.lxd import devices, names, probe
from edibuild.lxd.errors import Unreachable
from edibuild.lxd.protocol import ContainerBackend
from edibuild.run import say
from edibuild.store.fsutil import sha256_file

if TYPE_CHECKING:
    from edibuild.lxd import client
else:  # the LXD client is loaded when a build needs it, not at every doit start
    client = lazy_import("edibuild.lxd.client")


def container_name(project: Project) -> str:
    """The dev container's name: the project's choice, or edibuild-dev-<project>."""
    return project.container.name or names.dev_container(project.name)


def outputs(project: Project) -> Mapping[str, str]:
    """One output: the record of the running container."""
    return {"container": "dev-container.json"}


def config(project: Project) -> Json:
    """The container's name and shared folder."""
    share = project.container.share
    return {
        "name": container_name(project),
        "share": None if share is None else {"source": share.source, "path": share.path},
    }


def _image(ctx: StageContext, backend: ContainerBackend) -> str:
    """Import the configured rootfs (once) under the project's dev alias; return it."""
    alias = names.dev_image_alias(ctx.project.name, ctx.key)
    tarball = ctx.input("configure", "container")
    fingerprint = sha256_file(tarball)  # LXD names a unified image by its file's sha256
    image = backend.image(fingerprint)
    if image is None:
        say(f"container: importing the configured root file system as LXD image {alias}")
        backend.import_unified(tarball)
        image = backend.image(fingerprint)
    if image is None or alias not in image.aliases:
        backend.add_alias(fingerprint, alias, f"edibuild dev container image of {ctx.project.name}")
    return fingerprint


def build(ctx: StageContext) -> Json:
    """Import the configured rootfs as an image and (re)launch the dev container from it."""
    backend = client.connect(ctx.project.lxd.connection, timeout=None)  # uploads take a while
    name, share = container_name(ctx.project), ctx.project.container.share
    fingerprint = _image(ctx, backend)
    if _ours(backend, name, ctx.project) and backend.remove_instance(name):
        say(f"container: replacing {name} (its inputs changed)")
    share_devices: dict[str, devices.Device] = {}
    if share is not None:
        share_devices["share"] = devices.disk(Path(share.source), share.path)
        Path(share.source).mkdir(parents=True, exist_ok=True)
    box = backend.launch(
        name,
        fingerprint,
        profiles=["default"],
        devices=share_devices,
        config=names.labels(ctx.project.name),
    )
    _drop_old_images(backend, keep=fingerprint, project=ctx.project)
    record = {"name": box.name, "fingerprint": fingerprint}
    ctx.output("container").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    say(f"container: {box.name} is running; enter it with `lxc exec {box.name} -- bash`")
    return record


def _ours(backend: ContainerBackend, name: str, project: Project) -> bool:
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


def _drop_old_images(backend: ContainerBackend, keep: str, project: Project) -> None:
    """Delete the project's earlier dev-container images (never anything else)."""
    pattern = names.dev_image_pattern(project.name)
    for image in backend.images():
        if image.fingerprint != keep and any(pattern.match(a) for a in image.aliases):
            backend.delete_image(image.fingerprint)


def intact(project: Project, info: Mapping[str, Json]) -> bool:
    """True while the dev container still exists."""
    return probe.instance_exists(project.lxd.connection, str(info.get("name", "")))


def clean_external(project: Project) -> None:
    """Remove the project's dev container and its images (nothing to do without LXD)."""
    try:
        backend = client.connect(project.lxd.connection)
    except Unreachable as exc:
        print(f"container:{project.name} - nothing removed: {exc.message}")
        return
    name = container_name(project)
    if _ours(backend, name, project):
        backend.remove_instance(name)
    _drop_old_images(backend, keep="", project=project)


STAGE = Stage(
    name="container",
    doc="Launch the development container: the configured root file system, running in LXD",
    upstream=("configure",),
    outputs=outputs,
    config=config,
    build=build,
    intact=intact,
    clean_external=clean_external,
    in_image=False,
)
