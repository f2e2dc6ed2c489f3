"""What a dev container build says: the record in dev-container.json and how to enter it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from edibuild.data import Json
from edibuild.dev import packages as dev_packages
from edibuild.dev import setup, swap
from edibuild.dev.launch import Launch
from edibuild.lxd.protocol import Instance
from edibuild.store.workspace import Workspace


def _compare(launch: Launch, box: Instance) -> Json:
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


def record(
    launch: Launch,
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


def how_to_enter(launch: Launch, record: Mapping[str, Any], kept: swap.Kept | None) -> list[str]:
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
