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
from typing import TYPE_CHECKING, Any

from edibuild.errors import ConfigError, StageFailed
from edibuild.fsutil import sha256_file
from edibuild.lazy import lazy_import
from edibuild.lxd import devices, names, probe
from edibuild.lxd.errors import Unreachable
from edibuild.lxd.protocol import ContainerBackend
from edibuild.project import Json, Project
from edibuild.run import say
from edibuild.stage import Stage, StageContext

if TYPE_CHECKING:
    from edibuild.lxd import client
else:  # the LXD client is loaded when a build needs it, not at every doit start
    client = lazy_import("edibuild.lxd.client")

KEYS = ("name", "share")


def settings(project: Project) -> dict[str, Any]:
    """The validated `container` section (name and optional shared folder)."""
    raw = project.section("container") or {}
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r}",
            location=project.where("container"),
            key=f"container.{unknown[0]}",
            hint=f"known keys: {', '.join(KEYS)}",
        )
    name = str(raw.get("name") or names.dev_container(project.name))
    share = raw.get("share")
    if share is not None and not (
        isinstance(share, dict)
        and {"source", "path"} <= set(share)
        and Path(str(share["source"])).is_absolute()
        and str(share["path"]).startswith("/")
    ):
        raise ConfigError(
            "share needs an absolute `source` (host) and `path` (container)",
            location=project.where("container", "share"),
            key="container.share",
            hint="share: {source: /home/me/work, path: /home/edi/work}",
        )
    return {"name": name, "share": share}


def _outputs(project: Project) -> Mapping[str, str]:
    return {"container": "dev-container.json"}


def _config(project: Project) -> Json:
    return settings(project)


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
    backend = client.connect(ctx.project.section("lxd"), timeout=None)  # uploads take a while
    wanted = settings(ctx.project)
    fingerprint = _image(ctx, backend)
    if _ours(backend, wanted["name"], ctx.project) and backend.remove_instance(wanted["name"]):
        say(f"container: replacing {wanted['name']} (its inputs changed)")
    share_devices: dict[str, devices.Device] = {}
    if wanted["share"]:
        source = Path(str(wanted["share"]["source"]))
        share_devices["share"] = devices.disk(source, str(wanted["share"]["path"]))
        source.mkdir(parents=True, exist_ok=True)
    box = backend.launch(
        wanted["name"],
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
    return probe.instance_exists(project.section("lxd"), str(info.get("name", "")))


def clean_external(project: Project) -> None:
    """Remove the project's dev container and its images (nothing to do without LXD)."""
    try:
        backend = client.connect(project.section("lxd"))
    except Unreachable as exc:
        print(f"container:{project.name} - nothing removed: {exc.message}")
        return
    name = settings(project)["name"]
    if _ours(backend, name, project):
        backend.remove_instance(name)
    _drop_old_images(backend, keep="", project=project)


STAGE = Stage(
    name="container",
    doc="Launch the development container: the configured root file system, running in LXD",
    upstream=("configure",),
    outputs=_outputs,
    config=_config,
    build=build,
    intact=intact,
    clean_external=clean_external,
    in_image=False,
)
