"""container: the developer's LXD container, made from the project's configured root file system.

Reads: configure's output (the toolchain comes from the project's playbooks, cached like
any configure run) and the `container` section (edibuild/lxd/settings.py). At launch it
adds what belongs to this host and this developer, never to configure's shareable output:

- the developer's account (SUDO_USER, or `container.user`; root only when named): same
  name, uid, gid and home as on the host, password `*` (none matches), passwordless sudo,
  the keys of ~USER/.ssh/*.pub and of the project's ssh_pub_keys/;
- the workspace `~USER/edibuild-workspace` (or `container.workspace`), made as the user
  when missing and never touched otherwise, mounted at the same path in an unprivileged
  container whose `raw.idmap` maps the developer's uid and gid straight through (with
  `root:UID:1` added to /etc/subuid and /etc/subgid on a non-snap LXD);
- without a working LXD bridge: an ssh port on the host's 127.0.0.1 (stable per
  container) and apt through edibuild's long-lived apt proxy (edibuild/lxd/aptproxyd.py);
- the project's `lxd_profiles`, copied into the container's own config and devices (so a
  kept container depends on no profile).

Nothing the developer did is lost (edibuild/dev/swap.py): when the inputs change, the new
container is made under a temporary name while the old one runs; when it is ready, the
old one is stopped, renamed NAME-old-<time> and kept (edibuild never touches it again),
and the new one takes its name and ssh port. A change of the authorized keys alone, or
a container found stopped or an apt proxy found gone, is put right in place.

Writes: `dev-container.json` (name, user, ports, toolchain files); not part of `image:NAME`.
`doit clean container:NAME --forget` removes the container (never the kept ones, which it
lists) and its images, and stops the apt proxy when no dev container uses it.
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
from edibuild.lxd import mirrors, names
from edibuild.lxd.errors import Unreachable
from edibuild.run import say
from edibuild.store.fsutil import digest_json, sha256_file
from stages.configure import bootstrap_vars

if TYPE_CHECKING:
    from edibuild.dev import (
        apt,
        host,
        identity,
        idmap,
        images,
        instances,
        leftovers,
        ports,
        profiles,
        report,
        setup,
        swap,
    )
    from edibuild.dev import launch as dev_launch
    from edibuild.dev.launch import Launch
    from edibuild.host import emulation
    from edibuild.lxd import aptproxyd, buildnet, client, probe
    from edibuild.lxd.protocol import Instance
else:  # the dev container's parts and the LXD client are loaded when a build needs them,
    # not at every doit start (a no-op `doit image:NAME` plans this stage too)
    apt = lazy_import("edibuild.dev.apt")
    host = lazy_import("edibuild.dev.host")
    identity = lazy_import("edibuild.dev.identity")
    idmap = lazy_import("edibuild.dev.idmap")
    images = lazy_import("edibuild.dev.images")
    instances = lazy_import("edibuild.dev.instances")
    leftovers = lazy_import("edibuild.dev.leftovers")
    ports = lazy_import("edibuild.dev.ports")
    profiles = lazy_import("edibuild.dev.profiles")
    report = lazy_import("edibuild.dev.report")
    setup = lazy_import("edibuild.dev.setup")
    swap = lazy_import("edibuild.dev.swap")
    dev_launch = lazy_import("edibuild.dev.launch")
    emulation = lazy_import("edibuild.host.emulation")
    aptproxyd = lazy_import("edibuild.lxd.aptproxyd")
    buildnet = lazy_import("edibuild.lxd.buildnet")
    client = lazy_import("edibuild.lxd.client")
    probe = lazy_import("edibuild.lxd.probe")

# Bump when what a dev container is made of changes meaning: containers made before
# are then replaced (and kept) instead of updated in place.
FORMAT = 1


def outputs(project: Project) -> Mapping[str, str]:
    """One output: the record of the dev container."""
    return {"container": "dev-container.json"}


def config(project: Project) -> Json:
    """Name, developer, workspace, ssh, network, profiles: what the container is made of."""
    settings = project.container
    share = settings.share
    slice_: dict[str, Json] = {
        "format": FORMAT,
        "name": instances.container_name(project),
        "ssh": settings.ssh,
        "network": project.lxd.network,
        "proxy_hosts": mirrors.proxy_hosts(project),
        "target": settings.target,
        "share": None if share is None else {"source": share.source, "path": share.path},
        "lxd_profiles": [
            {"key": n.key, "parameters": dict(n.parameters)} for n in project.lxd_profiles
        ],
    }
    try:
        who = identity.developer(settings)
    except identity.NoDeveloper as exc:
        slice_.update(user=None, workspace=None, problem=exc.message)
    else:
        slice_.update(user=who.as_json(), workspace=identity.workspace(settings, who))
    return slice_


def _developer_keys(project: Project) -> tuple[Path, ...]:
    try:
        return identity.public_keys(identity.developer(project.container))
    except identity.NoDeveloper:
        return ()


def plugins(project: Project) -> tuple[Path, ...]:
    """The profiles, the project's ssh_pub_keys/ and the developer's ~/.ssh/*.pub."""
    files = {n.path for n in project.lxd_profiles}
    files.update(project.ssh_keys)
    files.update(_developer_keys(project))
    return tuple(sorted(files))


def base_digest(project: Project, fingerprint: str) -> str:
    """What needs a new container when it changes: all inputs but the authorized keys."""
    return digest_json(
        {
            "format": FORMAT,
            "config": config(project),
            "image": fingerprint,
            "profiles": {str(n.path): sha256_file(n.path) for n in project.lxd_profiles},
        }
    )


# -- build -------------------------------------------------------------------------------


def build(ctx: StageContext) -> Json:
    """Make (or bring up to date) the dev container; keep the old one when it is replaced."""
    project = ctx.project
    backend = client.connect(project.lxd.connection, timeout=None)  # uploads take a while
    if not backend.endpoint.is_local:
        raise StageFailed(
            f"the dev container shares a folder of this machine; {backend.endpoint.url} is "
            "another machine's LXD",
            hint="build the dev container with the local LXD (leave lxd.remote out)",
        )
    launch = dev_launch.Launch(ctx, backend)
    for gone in leftovers.remove_leftovers(backend, project):
        say(f"container: removed {gone}, left half-made by an earlier run")
    with ctx.phase("host"):
        subids = host.grant_ids(backend, launch.who)
        made = host.make_workspace(launch.workspace, launch.who)
        share = project.container.share
        if share is not None:
            Path(share.source).mkdir(parents=True, exist_ok=True)
        if launch.mode == "proxy":
            launch.proxy = apt.apt_proxy(mirrors.proxy_hosts(project))
    with ctx.phase("image"):
        fingerprint = images.ensure(backend, ctx.input("configure", "container"), project)
    base = base_digest(project, fingerprint)
    current = (
        backend.instance(launch.name) if instances.ours(backend, launch.name, project) else None
    )
    kept: swap.Kept | None = None
    if current is not None and current.config.get(dev_launch.BASE_LABEL) == base:
        with ctx.phase("update in place"):
            box, port = _update(launch, current, base)
    else:
        box, port, kept = _replace(launch, fingerprint, base, current)
    for alias in images.drop_old(backend, keep=fingerprint, project=project):
        say(f"container: removed the older image {alias}")
    record = report.record(launch, box, port, fingerprint, kept, subids, made)
    ctx.output("container").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    for line in report.how_to_enter(launch, record, kept):
        say(line)
    return record


def _update(launch: Launch, box: Instance, base: str) -> tuple[Instance, int | None]:
    """Bring a container of the same make up to date: running, devices, keys, labels."""
    say(f"container: {box.name} is of the same make; updating it in place")
    if box.status != "Running":
        box.start()
    port = ports.current(box)
    wanted: dict[str, Mapping[str, str] | None] = dict(launch.network_devices())
    if launch.wants_ssh_port:
        if port is None:
            port = ports.choose(box.name, ports.claimed(launch.backend, box.name))
        wanted[swap.SSH_DEVICE] = swap.ssh_device(port)
    box.update(config=dict(launch.labels(base)), devices=wanted)
    if launch.proxy is not None:
        setup.apt_proxy(box, apt.APT_LISTEN)
    setup.authorize(box, launch.who, launch.keys)
    return box, port if launch.wants_ssh_port else None


def _replace(
    launch: Launch, fingerprint: str, base: str, old: Instance | None
) -> tuple[Instance, int | None, swap.Kept | None]:
    """Make a new container under a temporary name; swap it in when it is ready."""
    backend, project, who = launch.backend, launch.project, launch.who
    temporary = swap.temporary_name(launch.name)
    profile_config, profile_devices = profiles.merged(project, bootstrap_vars(project))
    labels = {**launch.labels(base), **names.labels(project.name, transient=True)}
    config = {**profile_config, **labels}
    if not who.is_root:
        config["raw.idmap"] = idmap.raw_idmap(who.uid, who.gid)
    why = "its inputs changed" if old is not None else "there is none yet"
    say(f"container: making a new {launch.name} as {temporary} ({why})")
    try:  # from the create on: an interrupt while LXD creates it must remove it too
        with launch.ctx.phase("create"):
            box = backend.create(
                temporary,
                fingerprint,
                profiles=["default"],
                devices={**profile_devices, **launch.network_devices()},
                config=config,
            )
        with launch.ctx.phase("prepare"):
            _prepare(launch, box)
        port = None
        if launch.wants_ssh_port:
            port = ports.current(old) or ports.choose(
                launch.name, ports.claimed(backend, launch.name)
            )
        claimed = ports.claimed(backend) | ({port} if port else set())

        def pick(kept: str) -> int:
            return ports.choose(kept, claimed)

        stop = setup.stopper(emulation.needs_emulation(project.bootstrap.architecture))

        with launch.ctx.phase("put in place"):
            kept = swap.put_in_place(
                backend, box, launch.name, project.name, stop=stop, port=port,
                pick_port=pick, wait_free=ports.wait_ssh_free,
            )  # fmt: skip
    except BaseException:
        if backend.instance(temporary) is not None:
            backend.remove_instance(temporary)
        raise
    box.update(config={names.OWNER_LABEL: None})
    return box, port, kept


def _prepare(launch: Launch, box: Instance) -> None:
    """Start the new container and make it the developer's: name, account, ssh, folders."""
    who = launch.who
    say(f"container: starting {box.name}")
    box.start()
    setup.hostname(box, launch.name)
    if launch.proxy is not None:
        setup.apt_proxy(box, apt.APT_LISTEN)
    commands = setup.account(box, who, launch.keys)
    moved = [
        " ".join(argv)
        for argv in commands
        if argv[0] in ("usermod", "groupmod") and argv[-1] not in (who.name, who.group)
    ]
    if moved:
        say(f"container: moved what held {who.name}'s ids out of the way: {'; '.join(moved)}")
    if not who.is_root and not setup.has_sudo(box):
        launch.notes.append("sudo is not installed in the container (add it in a playbook)")
    if launch.project.container.ssh:
        setup.ssh_server(box, root=who.is_root)
    box.update(devices=launch.shared_devices())  # after the account: its home exists
    if not setup.user_can_write(box, who, launch.workspace):
        launch.notes.append(
            f"{who.name} cannot write {launch.workspace} inside: check its owner on the host"
        )
    if who.is_root:
        launch.notes.append(
            "root's workspace: files made inside belong to uid 100000 on the host (an "
            "unprivileged container cannot map root)"
        )


# -- up to date, clean --------------------------------------------------------------------


def intact(project: Project, info: Mapping[str, Json]) -> bool:
    """True while the container runs with these inputs (and its apt proxy, if it has one)."""
    found = probe.instance_info(project.lxd.connection, str(info.get("name", "")))
    if found is None or found["config"].get(dev_launch.KEY_LABEL) != info.get("key"):
        return False
    if found["status"] != "Running":
        return False
    proxy = info.get("apt_proxy")
    return not isinstance(proxy, dict) or aptproxyd.running(Path(proxy["state"])) is not None


def clean_external(project: Project) -> None:
    """Remove the dev container and its images; list the kept ones; stop an unused apt proxy."""
    try:
        backend = client.connect(project.lxd.connection)
    except Unreachable as exc:
        print(f"container:{project.name} - nothing removed: {exc.message}")
        return
    for box_name in leftovers.doomed(backend, project):
        backend.remove_instance(box_name)
        print(f"container:{project.name} - removed LXD container {box_name}")
    for alias in images.drop_old(backend, keep="", project=project):
        print(f"container:{project.name} - removed LXD image {alias}")
    for kept in leftovers.kept_containers(backend, project):
        print(f"container:{project.name} - kept {kept} (an earlier container, yours: "
              f"lxc delete {kept} removes it)")  # fmt: skip
    if apt.stop_unused(backend):
        print(f"container:{project.name} - stopped the apt proxy (no dev container uses it)")


STAGE = Stage(
    name="container",
    doc="Make the development container: the developer's own user, workspace, ssh, toolchain",
    upstream=("configure",),
    outputs=outputs,
    config=config,
    build=build,
    plugins=plugins,
    intact=intact,
    clean_external=clean_external,
    in_image=False,
)
