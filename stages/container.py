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
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edibuild.config.includes import read_layer
from edibuild.config.project import Project
from edibuild.data import Json, mapping
from edibuild.dev import identity, idmap, ports, setup, swap
from edibuild.dev import packages as dev_packages
from edibuild.dev.identity import Identity, NoDeveloper
from edibuild.engine.stage import Stage, StageContext
from edibuild.errors import StageFailed
from edibuild.host import emulation
from edibuild.lazy import lazy_import
from edibuild.lxd import aptproxyd, devices, names, probe
from edibuild.lxd.errors import Unreachable
from edibuild.lxd.protocol import ContainerBackend, Instance
from edibuild.run import run, say
from edibuild.store.fsutil import digest_json, sha256_file
from edibuild.store.workspace import Workspace
from stages.configure import bootstrap_vars, proxy_hosts

if TYPE_CHECKING:
    from edibuild.lxd import client
else:  # the LXD client is loaded when a build needs it, not at every doit start
    client = lazy_import("edibuild.lxd.client")

# Bump when what a dev container is made of changes meaning: containers made before
# are then replaced (and kept) instead of updated in place.
FORMAT = 1
BASE_LABEL = "user.edibuild.dev-base"  # what needs a new container when it changes
KEY_LABEL = "user.edibuild.dev-key"  # the stage key the container is up to date with
PROXY_LABEL = "user.edibuild.apt-proxy"  # the state folder of the apt proxy it uses
APT_DEVICE = "edibuild-apt"
WORKSPACE_DEVICE = "edibuild-workspace"
SHARE_DEVICE = "share"
APT_LISTEN = 3142
PROFILE_KEYS = ("config", "devices", "description", "name")


def container_name(project: Project) -> str:
    """The dev container's name: the project's choice, or edibuild-dev-<project>."""
    return project.container.name or names.dev_container(project.name)


def outputs(project: Project) -> Mapping[str, str]:
    """One output: the record of the dev container."""
    return {"container": "dev-container.json"}


def config(project: Project) -> Json:
    """Name, developer, workspace, ssh, network, profiles: what the container is made of."""
    settings = project.container
    share = settings.share
    slice_: dict[str, Json] = {
        "format": FORMAT,
        "name": container_name(project),
        "ssh": settings.ssh,
        "network": project.lxd.network,
        "proxy_hosts": proxy_hosts(project),
        "target": settings.target,
        "share": None if share is None else {"source": share.source, "path": share.path},
        "lxd_profiles": [
            {"key": n.key, "parameters": dict(n.parameters)} for n in project.lxd_profiles
        ],
    }
    try:
        who = identity.developer(settings)
    except NoDeveloper as exc:
        slice_.update(user=None, workspace=None, problem=exc.message)
    else:
        slice_.update(user=who.as_json(), workspace=identity.workspace(settings, who))
    return slice_


def _developer_keys(project: Project) -> tuple[Path, ...]:
    try:
        return identity.public_keys(identity.developer(project.container))
    except NoDeveloper:
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


# -- the image --------------------------------------------------------------------------


def _image(ctx: StageContext, backend: ContainerBackend) -> str:
    """Import the configured rootfs (once) under the project's dev alias; return it."""
    tarball = ctx.input("configure", "container")
    fingerprint = sha256_file(tarball)  # LXD names a unified image by its file's sha256
    alias = names.dev_image_alias(ctx.project.name, fingerprint)  # one alias per image
    image = backend.image(fingerprint)
    if image is None:
        say(f"container: importing the configured root file system as LXD image {alias}")
        backend.import_unified(tarball)
        image = backend.image(fingerprint)
    if image is None or alias not in image.aliases:
        backend.add_alias(fingerprint, alias, f"edibuild dev container image of {ctx.project.name}")
    return fingerprint


def _drop_old_images(backend: ContainerBackend, keep: str, project: Project) -> list[str]:
    """Delete the project's earlier dev-container images (never anything else)."""
    pattern = names.dev_image_pattern(project.name)
    removed = []
    for image in backend.images():
        mine = [a for a in image.aliases if pattern.match(a)]
        if image.fingerprint != keep and mine:
            backend.delete_image(image.fingerprint)
            removed.extend(mine)
    return removed


# -- the host side ----------------------------------------------------------------------


def _is_snap(backend: ContainerBackend) -> bool:
    """True for the snap's LXD, which maps ids itself and ignores /etc/subuid."""
    return "/snap/" in backend.endpoint.url


def _grant_ids(backend: ContainerBackend, who: Identity) -> list[str]:
    """Let LXD map the developer's ids (non-snap LXD: /etc/subuid, /etc/subgid); say so."""
    if who.is_root or _is_snap(backend):
        return []
    added = idmap.grant_ids(who.uid, who.gid)
    for line in added:
        say(f"container: added {line} so LXD may map {who.name}'s ids (non-snap LXD)")
    return added


def make_workspace(folder: str, who: Identity) -> bool:
    """Create the workspace as the developer when it is missing; True if it was made."""
    path = Path(folder)
    if path.is_dir():
        return False
    if path.exists() or path.is_symlink():
        raise StageFailed(f"the workspace {folder} exists and is not a folder",
                          hint="move it away, or set `container: {workspace: ...}`")  # fmt: skip
    if who.is_root:
        path.mkdir(parents=True)
    else:
        run(["runuser", "-u", who.name, "--", "mkdir", "-p", "--", folder])
    say(f"container: made the workspace {folder} (as {who.name})")
    return True


def _network_mode(backend: ContainerBackend, project: Project) -> str:
    """`default` (the profile's NIC on a working bridge) or `proxy` (this machine's way)."""
    wanted = project.lxd.network
    if wanted == "auto":
        wanted = "default" if backend.default_network_works() else "proxy"
    return wanted


def _apt_proxy(project: Project) -> tuple[Path, aptproxyd.Daemon]:
    """The long-lived apt proxy of this workspace's cache, started if needed."""
    cache = Workspace.from_environment().cache_dir
    state = aptproxyd.state_dir(cache)

    def choose(seed: str) -> int:
        return ports.choose(seed, base=ports.PROXY_BASE, span=ports.PROXY_SPAN)

    def start(argv: list[str], log: Path) -> None:
        run(argv, log=log)

    daemon = aptproxyd.ensure(
        state, aptproxy_cache(cache), proxy_hosts(project), choose_port=choose, start=start
    )
    if daemon.started:
        say(f"container: started the apt proxy on 127.0.0.1:{daemon.port} (pid {daemon.pid}, "
            f"log {state / 'log'})")  # fmt: skip
    return state, daemon


def aptproxy_cache(cache: Path) -> Path:
    """Where the apt proxy keeps downloads (shared with configure's proxy)."""
    from edibuild.lxd import aptproxy

    return aptproxy.cache_root(cache)


# -- profiles, labels, ports -----------------------------------------------------------------


def _profiles(project: Project) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The project's LXD profiles merged into one config and one device set."""
    merged_config: dict[str, str] = {}
    merged_devices: dict[str, dict[str, str]] = {}
    for node in project.lxd_profiles:
        variables = {**project.parameters, **node.parameters, **bootstrap_vars(project)}
        spec = read_layer(node.path, variables).data
        unknown = sorted(set(spec) - set(PROFILE_KEYS))
        if unknown:
            raise StageFailed(f"LXD profile {node.path}: unknown keys {unknown}",
                              hint="a profile holds config, devices and description")  # fmt: skip
        for key, value in mapping(spec.get("config")).items():
            merged_config[str(key)] = _lxd_value(value)
        for dev, device in mapping(spec.get("devices")).items():
            merged_devices[str(dev)] = {str(k): _lxd_value(v) for k, v in mapping(device).items()}
    return merged_config, merged_devices


def _lxd_value(value: Any) -> str:
    """LXD's config values are strings (`true`, not True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _all_instances(backend: ContainerBackend) -> Iterator[Instance]:
    for name in backend.instance_names(""):
        box = backend.instance(name)
        if box is not None:
            yield box


def _claimed_ports(backend: ContainerBackend, skip: str = "") -> set[int]:
    """Host ports every other instance's proxy devices listen on (running or not)."""
    claimed = set()
    for box in _all_instances(backend):
        if box.name != skip:
            for device in box.devices.values():
                port = ports.listen_port(dict(device))
                if port is not None:
                    claimed.add(port)
    return claimed


def _wait_free(port: int) -> None:
    """Wait for the old container's ssh listener to let go of its port."""
    try:
        ports.wait_free(port)
    except OSError as exc:
        raise StageFailed(
            f"the dev container's ssh port is taken: {exc}",
            hint=f"see who listens there (ss -ltnp | grep {port}) and stop it",
        ) from None


def _current_port(box: Instance | None) -> int | None:
    """The ssh port of a container: its ssh device's (the device is where the port lives)."""
    device = None if box is None else box.devices.get(swap.SSH_DEVICE)
    return None if device is None else ports.listen_port(dict(device))


# -- build -------------------------------------------------------------------------------


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


class _Launch:
    """One build's facts: the developer, the workspace, keys, network and the labels."""

    def __init__(self, ctx: StageContext, backend: ContainerBackend) -> None:
        project = ctx.project
        self.ctx = ctx
        self.backend = backend
        self.project = project
        self.name = container_name(project)
        self.who = identity.developer(project.container)
        self.workspace = identity.workspace(project.container, self.who)
        files = tuple(sorted({*project.ssh_keys, *identity.public_keys(self.who)}))
        self.keys = identity.authorized_keys(files)
        self.mode = _network_mode(backend, project)
        self.proxy: tuple[Path, aptproxyd.Daemon] | None = None
        self.notes: list[str] = []

    def labels(self, base: str) -> dict[str, str]:
        labels = {**names.labels(self.project.name), BASE_LABEL: base, KEY_LABEL: self.ctx.key}
        if self.proxy is not None:
            labels[PROXY_LABEL] = os.fspath(self.proxy[0])
        return labels

    def network_devices(self) -> dict[str, dict[str, str]]:
        if self.proxy is None:
            return {}
        return {APT_DEVICE: devices.proxy(self.proxy[1].port, APT_LISTEN)}

    def shared_devices(self) -> dict[str, dict[str, str]]:
        found = {WORKSPACE_DEVICE: devices.disk(self.workspace, self.workspace)}
        share = self.project.container.share
        if share is not None:
            found[SHARE_DEVICE] = devices.disk(share.source, share.path)
        return found

    @property
    def wants_ssh_port(self) -> bool:
        return self.project.container.ssh and self.mode == "proxy"


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
    launch = _Launch(ctx, backend)
    for gone in remove_leftovers(backend, project):
        say(f"container: removed {gone}, left half-made by an earlier run")
    with ctx.phase("host"):
        subids = _grant_ids(backend, launch.who)
        made = make_workspace(launch.workspace, launch.who)
        share = project.container.share
        if share is not None:
            Path(share.source).mkdir(parents=True, exist_ok=True)
        if launch.mode == "proxy":
            launch.proxy = _apt_proxy(project)
    with ctx.phase("image"):
        fingerprint = _image(ctx, backend)
    base = base_digest(project, fingerprint)
    current = backend.instance(launch.name) if _ours(backend, launch.name, project) else None
    kept: swap.Kept | None = None
    if current is not None and current.config.get(BASE_LABEL) == base:
        with ctx.phase("update in place"):
            box, port = _update(launch, current, base)
    else:
        box, port, kept = _replace(launch, fingerprint, base, current)
    for alias in _drop_old_images(backend, keep=fingerprint, project=project):
        say(f"container: removed the older image {alias}")
    record = _record(launch, box, port, fingerprint, kept, subids, made)
    ctx.output("container").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    for line in _how_to_enter(launch, record, kept):
        say(line)
    return record


def _update(launch: _Launch, box: Instance, base: str) -> tuple[Instance, int | None]:
    """Bring a container of the same make up to date: running, devices, keys, labels."""
    say(f"container: {box.name} is of the same make; updating it in place")
    if box.status != "Running":
        box.start()
    port = _current_port(box)
    wanted: dict[str, Mapping[str, str] | None] = dict(launch.network_devices())
    if launch.wants_ssh_port:
        if port is None:
            port = ports.choose(box.name, _claimed_ports(launch.backend, box.name))
        wanted[swap.SSH_DEVICE] = swap.ssh_device(port)
    box.update(config=dict(launch.labels(base)), devices=wanted)
    if launch.proxy is not None:
        setup.apt_proxy(box, APT_LISTEN)
    setup.authorize(box, launch.who, launch.keys)
    return box, port if launch.wants_ssh_port else None


def _replace(
    launch: _Launch, fingerprint: str, base: str, old: Instance | None
) -> tuple[Instance, int | None, swap.Kept | None]:
    """Make a new container under a temporary name; swap it in when it is ready."""
    backend, project, who = launch.backend, launch.project, launch.who
    temporary = swap.temporary_name(launch.name)
    profile_config, profile_devices = _profiles(project)
    labels = {**launch.labels(base), **names.labels(project.name, transient=True)}
    config = {**profile_config, **labels}
    if not who.is_root:
        config["raw.idmap"] = idmap.raw_idmap(who.uid, who.gid)
    why = "its inputs changed" if old is not None else "there is none yet"
    say(f"container: making a new {launch.name} as {temporary} ({why})")
    with launch.ctx.phase("create"):
        box = backend.create(
            temporary,
            fingerprint,
            profiles=["default"],
            devices={**profile_devices, **launch.network_devices()},
            config=config,
        )
    try:
        with launch.ctx.phase("prepare"):
            _prepare(launch, box)
        port = None
        if launch.wants_ssh_port:
            port = _current_port(old) or ports.choose(
                launch.name, _claimed_ports(backend, launch.name)
            )
        claimed = _claimed_ports(backend) | ({port} if port else set())

        def pick(kept: str) -> int:
            return ports.choose(kept, claimed)

        stop = setup.stopper(emulation.needs_emulation(project.bootstrap.architecture))

        with launch.ctx.phase("put in place"):
            kept = swap.put_in_place(
                backend, box, launch.name, project.name, stop=stop, port=port,
                pick_port=pick, wait_free=_wait_free,
            )  # fmt: skip
    except BaseException:
        if backend.instance(temporary) is not None:
            backend.remove_instance(temporary)
        raise
    box.update(config={names.OWNER_LABEL: None})
    return box, port, kept


def _prepare(launch: _Launch, box: Instance) -> None:
    """Start the new container and make it the developer's: name, account, ssh, folders."""
    who = launch.who
    say(f"container: starting {box.name}")
    box.start()
    setup.hostname(box, launch.name)
    if launch.proxy is not None:
        setup.apt_proxy(box, APT_LISTEN)
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


def _compare(launch: _Launch, box: Instance) -> Json:
    """Compare the target libraries with the image project's packages (when it was built)."""
    target = launch.project.container.target
    if target is None:
        return None
    found = dev_packages.image_packages(Workspace.from_environment().artifacts_dir / target)
    if found is None:
        launch.notes.append(f"target libraries not compared: {target} has no package list yet "
                            f"(doit export:{target})")  # fmt: skip
        return None
    source, image = found
    arch = setup.target_architecture(box)
    result = dev_packages.compare(setup.installed(box), image, arch, source)
    launch.notes.extend(result.lines())
    return result.as_json()


def _record(
    launch: _Launch,
    box: Instance,
    port: int | None,
    fingerprint: str,
    kept: swap.Kept | None,
    subids: list[str],
    made: bool,
) -> dict[str, Json]:
    """What dev-container.json and the manifest say about the container."""
    who = launch.who
    address = None if launch.mode == "proxy" else next(iter(box.addresses()), None)
    return {
        "name": launch.name,
        "key": launch.ctx.key,
        "fingerprint": fingerprint,
        "user": who.as_json(),
        "workspace": launch.workspace,
        "workspace_made": made,
        "network": launch.mode,
        "ssh": None
        if not launch.project.container.ssh
        else {"host": "127.0.0.1" if port else address, "port": port or 22},
        "apt_proxy": None
        if launch.proxy is None
        else {"state": os.fspath(launch.proxy[0]), "port": launch.proxy[1].port},
        "toolchain": setup.tool_files(box),
        "target_libraries": _compare(launch, box),
        "kept": None if kept is None else {"name": kept.name, "ssh_port": kept.port},
        "subids_added": subids,
        "notes": list(launch.notes),
    }


def _how_to_enter(launch: _Launch, record: Mapping[str, Any], kept: swap.Kept | None) -> list[str]:
    """The lines that end `doit container:NAME`: how to get in, where things are."""
    name, who = launch.name, launch.who
    user = who.name
    lines = [f"container: {name} is running; {user} (uid {who.uid}) is you inside"]
    lines.append(f"  enter it:   lxc exec {name} -- su -l {user}")
    ssh = record["ssh"]
    if ssh and ssh["host"]:
        port = f"-p {ssh['port']} " if ssh["port"] != 22 else ""
        lines.append(f"  or by ssh:  ssh {port}{user}@{ssh['host']}   (keys only)")
    lines.append(f"  workspace:  {launch.workspace} (the same folder on the host, yours on both "
                 "sides)")  # fmt: skip
    for tool in record["toolchain"]:
        use = "-DCMAKE_TOOLCHAIN_FILE=" if tool.endswith(".cmake") else "--cross-file "
        lines.append(f"  toolchain:  {tool}  ({use}{tool})")
    if record["apt_proxy"]:
        lines.append(
            f"  apt:        through edibuild's apt proxy on the host (127.0.0.1:"
            f"{record['apt_proxy']['port']}); it runs while a dev container uses it "
            "(doit clean stops it; after a reboot `doit container:...` starts it again)"
        )
    if kept is not None:
        how = f"lxc start {kept.name}, then lxc exec {kept.name} -- su -l {user}"
        if kept.port:
            how += f" or ssh -p {kept.port} {user}@127.0.0.1"
        lines.append(f"  kept:       the previous container is {kept.name} (stopped, yours now): "
                     f"{how}; remove it with lxc delete {kept.name}")  # fmt: skip
    lines += [f"  note:       {note}" for note in record["notes"]]
    return lines


# -- up to date, clean --------------------------------------------------------------------


def intact(project: Project, info: Mapping[str, Json]) -> bool:
    """True while the container runs with these inputs (and its apt proxy, if it has one)."""
    found = probe.instance_info(project.lxd.connection, str(info.get("name", "")))
    if found is None or found["config"].get(KEY_LABEL) != info.get("key"):
        return False
    if found["status"] != "Running":
        return False
    proxy = info.get("apt_proxy")
    return not isinstance(proxy, dict) or aptproxyd.running(Path(proxy["state"])) is not None


def kept_containers(backend: ContainerBackend, project: Project) -> list[str]:
    """The project's earlier containers that edibuild kept (the developer's now)."""
    return [
        box.name
        for box in _all_instances(backend)
        if box.config.get(swap.KEPT_LABEL) == project.name
    ]


def clean_external(project: Project) -> None:
    """Remove the dev container and its images; list the kept ones; stop an unused apt proxy."""
    try:
        backend = client.connect(project.lxd.connection)
    except Unreachable as exc:
        print(f"container:{project.name} - nothing removed: {exc.message}")
        return
    name = container_name(project)
    prefix = swap.temporary_prefix(name)
    doomed = [name] if _ours(backend, name, project) else []
    for other in backend.instance_names(prefix):
        box = backend.instance(other)
        if box is not None and names.belongs_to(box.config, project.name):
            doomed.append(other)
    for box_name in doomed:
        backend.remove_instance(box_name)
        print(f"container:{project.name} - removed LXD container {box_name}")
    for alias in _drop_old_images(backend, keep="", project=project):
        print(f"container:{project.name} - removed LXD image {alias}")
    for kept in kept_containers(backend, project):
        print(f"container:{project.name} - kept {kept} (an earlier container, yours: "
              f"lxc delete {kept} removes it)")  # fmt: skip
    state = aptproxyd.state_dir(Workspace.from_environment().cache_dir)
    users = [
        box.name
        for box in _all_instances(backend)
        if box.config.get(PROXY_LABEL) == os.fspath(state) and names.PROJECT_LABEL in box.config
    ]
    if not users and aptproxyd.stop(state):
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
