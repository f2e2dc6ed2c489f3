"""Stage configure: run the project's playbooks in a fresh LXD container, then save it.

Input: import/image. Output: `container` (configured.tar.zst): the stopped container
as LXD's unified image tarball (metadata.yaml, rootfs/), zstd -3: read straight from the
storage pool when it is a local folder (edibuild/lxd/poolread.py), else published.

The whole life of the container stays inside this one build function: launch (with
the project's profiles, and either the default profile's network or a proxy device
to edibuild's apt proxy), playbooks, stop, export, then removal in a
`finally`, so no later stage depends on a container that a crash could have left
half-configured. The export stage turns the tarball into the reproducible rootfs.
Leftovers of a killed run (same project, stage prefix, owner process gone) are
removed when the next run starts; `clean_external` removes all of the project's.

Layers (edibuild/lxd/layers.py; opt out with `lxd: {layers: false}`): after the
playbooks worth it (the last but one on a run from scratch, and any once the playbooks
since the last saved state took a while; `layers: every` for each but the last), the
container is tidied, stopped, published as an LXD image named by the key of the state
so far, and started again. A later run launches from the longest cached prefix and
runs only the playbooks after it: editing the third playbook of three reruns the third
only. A playbook so starts in a freshly booted container after every saved state,
whether that state was just made or comes from a layer; the result equals a run without
layers, which boots once (a test compares the two).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edibuild.ansible import bytecode
from edibuild.config.includes import read_layer
from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.errors import CommandFailed
from edibuild.image.reproducible import source_date_epoch
from edibuild.lazy import lazy_import
from edibuild.lxd import mirrors, names
from edibuild.lxd.errors import BackendError, Refused
from edibuild.run import say

if TYPE_CHECKING:
    from edibuild.ansible import playbook
    from edibuild.lxd import buildnet, client, layers, poolread
    from edibuild.lxd.buildnet import Network
    from edibuild.lxd.layers import Plan
    from edibuild.lxd.poolread import LocalFolder
    from edibuild.lxd.protocol import ContainerBackend, Instance
else:  # loaded when a build needs them, not at every doit start
    buildnet = lazy_import("edibuild.lxd.buildnet")
    layers = lazy_import("edibuild.lxd.layers")
    client = lazy_import("edibuild.lxd.client")
    poolread = lazy_import("edibuild.lxd.poolread")
    playbook = lazy_import("edibuild.ansible.playbook")


def container_prefix(project: Project) -> str:
    """Return the name prefix of this project's configure containers."""
    return names.configure_prefix(project.name)


def _containers(backend: ContainerBackend, project: Project) -> Iterator[Instance]:
    """The project's configure containers (by label; unlabelled ones by name prefix)."""
    prefix = container_prefix(project)
    for name in backend.instance_names(prefix):
        box = backend.instance(name)
        if box is not None and names.belongs_to(box.config, project.name, name, prefix):
            yield box


def _remove(backend: ContainerBackend, name: str) -> None:
    """Remove a configure container and the profiles made for it."""
    backend.remove_instance(name)
    backend.delete_profiles(f"{name}-")


def _remove_at_end(backend: ContainerBackend, name: str) -> None:
    """Remove the build's container; if LXD cannot (it is gone, say), leave it to the next
    run, which removes a container whose process ended, and keep the build's own error."""
    try:
        _remove(backend, name)
    except BackendError as exc:
        say(f"configure: could not remove container {name} ({exc.message}); the next run does")


def remove_leftovers(backend: ContainerBackend, project: Project) -> list[str]:
    """Remove what earlier configure runs of `project` whose process is gone left in LXD:
    containers, their profiles, and images published but not yet named (a layer or the
    temporary export of a run killed in between)."""
    removed = []
    for box in list(_containers(backend, project)):
        if names.mark_gone(box.config.get(names.OWNER_LABEL, "")):
            _remove(backend, box.name)
            removed.append(f"container {box.name}")
    for profile, config in backend.profile_configs(container_prefix(project)).items():
        if config.get(names.PROJECT_LABEL) == project.name and names.mark_gone(
            config.get(names.OWNER_LABEL, "")
        ):
            backend.delete_profiles(profile)
            removed.append(f"profile {profile}")
    for image in backend.images():
        if not image.aliases and image.project == project.name and names.mark_gone(image.owner):
            backend.delete_image(image.fingerprint)
            removed.append(f"image {image.fingerprint[:12]}")
    return removed


def outputs(project: Project) -> Mapping[str, str]:
    """One output: the configured container as an LXD image tarball."""
    return {"container": "configured.tar.zst"}


def config(project: Project) -> dict[str, Json]:
    """Parameters, extra vars, playbooks, profiles, mirror, proxy hosts and the epoch."""
    boot = project.bootstrap
    return {
        "parameters": dict(project.parameters),
        "extra_vars": bootstrap_vars(project),
        "playbooks": [{"key": n.key, "parameters": dict(n.parameters)} for n in project.playbooks],
        "lxd_profiles": [
            {"key": n.key, "parameters": dict(n.parameters)} for n in project.lxd_profiles
        ],
        "mirror": boot.mirror,
        "proxy_hosts": mirrors.proxy_hosts(project),
        "source_date_epoch": source_date_epoch(project),
    }


def container_environment(epoch: int) -> dict[str, str]:
    """LXD config giving every command in the container SOURCE_DATE_EPOCH (mkinitramfs, useradd)."""
    return {"environment.SOURCE_DATE_EPOCH": str(epoch)}


def plugins(project: Project) -> tuple[Path, ...]:
    """Every file the playbooks may read: profiles, playbooks with the files of their
    folders, and ssh_pub_keys/ (found and bounded at load: edibuild/config/paths.py)."""
    files: set[Path] = {n.path for n in project.lxd_profiles}
    for node in project.playbooks:
        files.add(node.path)
        files.update(node.files)
    files.update(project.ssh_keys)
    return tuple(sorted(files))


def parsed_plugins(project: Project) -> tuple[Path, ...]:
    """The playbooks: Ansible reads them as YAML, so they count by what they say (a
    comment or layout edit runs nothing); the files beside them count by their bytes."""
    return tuple(sorted({n.path for n in project.playbooks}))


def bootstrap_vars(project: Project) -> dict[str, Json]:
    """Return the extra vars every playbook gets about the project and its mirror."""
    boot = project.bootstrap
    return {
        "edibuild_project_name": project.name,
        "edibuild_project_dir": str(project.file.parent),
        "edibuild_mirror": boot.mirror,
        "edibuild_suite": boot.suite,
        "edibuild_components": list(boot.components),
        "edibuild_architecture": boot.architecture,
    }


def create_profiles(backend: ContainerBackend, project: Project, name: str) -> list[str]:
    """Create one LXD profile per profile plugin (Jinja2-rendered YAML); return their names."""
    made = []
    for node in project.lxd_profiles:
        variables = {**project.parameters, **node.parameters, **bootstrap_vars(project)}
        # The same sandboxed, bounded rendering and parsing as project files.
        spec = read_layer(node.path, variables).data
        profile = names.profile(name, node.key)
        # Owned like the container: a run killed before it made the container leaves
        # profiles that only the owner label tells apart.
        backend.create_profile(profile, spec, names.labels(project.name, transient=True))
        made.append(profile)
    return made


def _run_playbooks(
    ctx: StageContext, backend: ContainerBackend, box: Instance, network: Network, plan: Plan
) -> Json:
    """Run the playbooks the start layer does not cover; save the layers the plan asks for."""
    done: list[Json] = []
    unsaved = 0.0  # playbook seconds since the start or the last saved layer
    for index, node in enumerate(ctx.project.playbooks):
        if index < plan.start:
            continue
        say(f"configure: playbook {node.key}")
        extra = {**ctx.project.parameters, **node.parameters, **bootstrap_vars(ctx.project)}
        data_dir = ctx.scratch(f"ansible/{index:02d}-{node.key}")
        with ctx.phase("playbooks"):
            progress = playbook.run_playbook(
                node.path, box.name, backend.endpoint.as_json(), extra, data_dir, ctx.log
            )
        done.append(
            {
                "key": node.key,
                "tasks": progress.tasks,
                "changed": progress.changed,
                "seconds": progress.seconds,
                "task_seconds": progress.timings,
            }
        )
        unsaved += progress.seconds
        if plan.publishes(index, unsaved):
            with ctx.phase("save layers"):
                _save_layer(ctx, backend, box, network, plan, index)
            unsaved = 0.0
    return done


# Settings for the build only: pushed after every start, removed before every save (and
# dropped by export too). dpkg skips fsync (a build that crashes is thrown away anyway);
# apt fetches no translations of package descriptions (the lists never reach the image).
BUILD_ONLY = {
    "/etc/dpkg/dpkg.cfg.d/00edibuild-build": b"# edibuild, while configuring\nforce-unsafe-io\n",
    "/etc/apt/apt.conf.d/00edibuild-build": b'Acquire::Languages "none";\n',
}


def _prepare(box: Instance, network: Network) -> None:
    """Set the container up for a run of playbooks: the proxy setting, BUILD_ONLY, the
    bytecode cache of Ansible's modules."""
    network.prepare(box)
    for path, text in BUILD_ONLY.items():
        box.push(path, text, mode=0o644, uid=0, gid=0)
    bytecode.install(box)


def _tidy(box: Instance, network: Network) -> None:
    """Remove what only the run needs (proxy setting, BUILD_ONLY, Ansible's files, the
    bytecode cache; a tmpfs would drop it at the stop anyway)."""
    network.unprepare(box)
    box.check(
        ["rm", "-rf", "/root/.ansible", bytecode.SITE_DIR, *BUILD_ONLY],
        "removing the build's own files",
    )


def _save_layer(
    ctx: StageContext,
    backend: ContainerBackend,
    box: Instance,
    network: Network,
    plan: Plan,
    i: int,
) -> None:
    """Stop the container, save it as the layer after playbook `i`, start it again."""
    after = ctx.project.playbooks[i].key
    say(f"configure: saving the state after {after} as a layer")
    _tidy(box, network)
    box.stop()
    folder = backend.local_folder(box.name)
    image_of = None if folder is None else functools.partial(_import, ctx, backend, box, folder)
    plan.made.append(layers.publish(backend, box, ctx.project, plan.keys[i], after, image_of))
    box.start()
    _prepare(box, network)


def _import(
    ctx: StageContext,
    backend: ContainerBackend,
    box: Instance,
    folder: LocalFolder,
    description: str,
) -> tuple[str, str]:
    """Make the stopped container an image by reading its folder and importing the
    tarball (6.6 s for 1 GB here, where LXD's publish takes 10 s); return its fingerprint
    and the way it was made. When the tarball cannot be written (scratch space full,
    say), LXD publishes it."""
    tarball = ctx.scratch("layer.tar.zst")
    try:
        try:
            _write_unified(ctx, box, folder, tarball, description)
        except (CommandFailed, OSError) as exc:
            say(f"configure: reading the container failed ({exc}); publishing it instead")
            return box.publish(compression=layers.COMPRESSION, description=description), "publish"
        return backend.import_unified(tarball), "storage pool"
    finally:
        tarball.unlink(missing_ok=True)


def _launch(
    ctx: StageContext, backend: ContainerBackend, name: str, plan: Plan, image: str, net: Network
) -> Instance:
    """Launch the container from the plan's layer, or from the imported image."""
    profiles = ["default", *create_profiles(backend, ctx.project, name)]
    labels = {
        **names.labels(ctx.project.name, transient=True),
        **container_environment(ctx.source_date_epoch),
    }
    devices = {**net.devices, **backend.build_root()}  # edibuild's btrfs pool if there
    launch = functools.partial(
        backend.launch, name, profiles=profiles, devices=devices, config=labels
    )
    if plan.start:
        after = ctx.project.playbooks[plan.start - 1].key
        say(f"configure: launching container {name} from the cached state after {after}")
        try:
            return launch(plan.source)
        except Refused as exc:  # the layer went away since the lookup
            say(f"configure: the layer could not be used ({exc}); starting from scratch")
            backend.remove_instance(name)
            plan.start, plan.source = 0, image
    say(f"configure: launching container {name} ({net.mode} network)")
    return launch(image)


def make_plan(ctx: StageContext, backend: ContainerBackend, image: str) -> Plan:
    """Compute the layer keys of this run and find the longest cached prefix."""
    project = ctx.project
    shared = [n.path for n in project.lxd_profiles]
    shared.extend(project.ssh_keys)
    common = layers.common_config(config(project))
    keys = layers.layer_keys(project, image, ctx.stage.code_version, common, shared)
    return layers.plan(backend, project, keys, image, layers.enabled(project))


def build(ctx: StageContext) -> Json:
    """Launch a container (from the imported image or a cached layer), configure, save it."""
    backend = client.connect(ctx.project.lxd.connection, timeout=None)
    for what in remove_leftovers(backend, ctx.project):
        say(f"configure: removed {what} left by an earlier run")
    image = str(json.loads(ctx.input("import", "image").read_text())["fingerprint"])
    plan = make_plan(ctx, backend, image)
    name = names.configure_container(ctx.project.name, ctx.key)
    with contextlib.ExitStack() as stack:
        stack.callback(_remove_at_end, backend, name)
        network = stack.enter_context(buildnet.network_for(backend, ctx.project))
        with ctx.phase("launch"):
            box = _launch(ctx, backend, name, plan, image, network)
            _prepare(box, network)
        playbooks = _run_playbooks(ctx, backend, box, network, plan)
        with ctx.phase("stop and export"):
            cached = bytecode.cached_sources(box)
            _tidy(box, network)
            say(f"configure: stopping and exporting container {name}")
            box.stop()
            read_from = _export(ctx, backend, box)
    if plan.made:
        for gone in layers.prune(backend, ctx.project, plan.keys):
            say(f"configure: removed the older layer {gone}")
    return {
        "container": name,
        "network": network.mode,
        "exported_from": read_from,
        "playbooks": playbooks,
        "python_bytecode_cached": cached,  # sources Ansible's modules compiled once, not per task
        "layers": plan.info(ctx.project),
        "apt_proxy": network.stats(),
    }


ZSTD = ("zstd", "-q", "-T0", "-3")


def _export(ctx: StageContext, backend: ContainerBackend, box: Instance) -> str:
    """Write the stopped container as LXD's unified image tarball (zstd): read straight
    from a local dir pool (see edibuild/lxd/poolread.py), else published and streamed out
    of LXD. Return which of the two."""
    target = ctx.output("container")
    folder = backend.local_folder(box.name)
    if folder is None:
        with box.exported() as tarball:  # compressed as it streams out of LXD
            ctx.run([*ZSTD, "-o", target], input=tarball)
        return "publish"
    _write_unified(ctx, box, folder, target)
    return "storage pool"


def _write_unified(
    ctx: StageContext, box: Instance, folder: LocalFolder, target: Path, description: str = ""
) -> None:
    """Write the stopped container's folder as LXD's unified image tarball, zstd."""
    properties = box.image_properties()
    if description:
        properties["description"] = description
    metadata = poolread.metadata_yaml(folder, properties)
    target.unlink(missing_ok=True)  # a run interrupted here left one
    ctx.run([*ZSTD, "-o", target], input=poolread.metadata_member(metadata))
    # A second zstd frame, after the first: one tar stream when decompressed.
    ctx.run(poolread.tar_argv(folder, " ".join(ZSTD)), cwd=folder.rootfs, append_to=target)


def clean_external(project: Project) -> None:
    """Remove every configure container (and its profiles) and layer of `project`."""
    backend = client.connect(project.lxd.connection)
    for box in list(_containers(backend, project)):
        _remove(backend, box.name)
    for what in remove_leftovers(backend, project):  # profiles and unnamed images
        print(f"configure:{project.name} - removed {what}")
    for alias in layers.remove_all(backend, project):
        print(f"configure:{project.name} - removed LXD image {alias}")


def tools(project: Project) -> tuple[Tool, ...]:
    """zstd compresses the published container."""
    return (Tool("zstd", "zstd"),)


STAGE = Stage(
    name="configure",
    doc="Configure the root file system with the project's Ansible playbooks in LXD",
    upstream=("import",),
    outputs=outputs,
    config=config,
    build=build,
    plugins=plugins,
    parsed_plugins=parsed_plugins,
    tools=tools,
    clean_external=clean_external,
)
