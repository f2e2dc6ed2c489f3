"""Nothing the developer did is lost: a new dev container takes the old one's place when ready.

The new container is made under a temporary name while the old one keeps running. Once
it is ready: both stop, the old one is renamed (`NAME-old-YYYYMMDD-HHMMSS`), labelled as
kept (edibuild never touches it again) and given an ssh port of its own, and the new one
is renamed into place with the old one's port and started. A failure at any step undoes
the steps before it, in reverse, and leaves the old container running as it was (the
caller then removes the new one).
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass

from edibuild.dev import ports
from edibuild.errors import EdibuildError
from edibuild.lxd import names
from edibuild.lxd.protocol import ContainerBackend, Instance
from edibuild.run import say

MAX_NAME = 63  # LXD's limit for instance names
KEPT_LABEL = "user.edibuild.kept-from"
KEPT_AT_LABEL = "user.edibuild.kept-at"
SSH_DEVICE = ports.SSH_DEVICE

Stop = Callable[[Instance], None]
Undo = Callable[[], None]


def _fit(base: str, suffix: str) -> str:
    """`base` + `suffix`, shortening `base` so the name fits LXD's limit (no '-' before suffix)."""
    return base[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def temporary_prefix(name: str) -> str:
    """The name prefix of the containers made to replace `name` (NAME-new-)."""
    return name[: MAX_NAME - len("-new-0000")].rstrip("-") + "-new-"


def temporary_name(name: str, token: str | None = None) -> str:
    """Where the new container is made while the old one still runs: NAME-new-XXXX."""
    return temporary_prefix(name) + (token or secrets.token_hex(2))


def kept_name(name: str, when: datetime.datetime, taken: Container[str]) -> str:
    """The old container's new name: NAME-old-YYYYMMDD-HHMMSS (-2, -3 ... when taken)."""
    stamp = when.strftime("%Y%m%d-%H%M%S")
    candidate = _fit(name, f"-old-{stamp}")
    number = 2
    while candidate in taken:
        candidate = _fit(name, f"-old-{stamp}-{number}")
        number += 1
    return candidate


def ssh_device(port: int) -> dict[str, str]:
    """The proxy device forwarding the host's 127.0.0.1:port to the container's sshd."""
    return {
        "type": "proxy",
        "bind": "host",
        "listen": f"tcp:127.0.0.1:{port}",
        "connect": "tcp:127.0.0.1:22",
    }


@dataclass(frozen=True)
class Kept:
    """Where the old container went: its name now and its own ssh port (None without ssh)."""

    name: str
    port: int | None


def kept_labels(project: str, when: datetime.datetime) -> dict[str, str | None]:
    """The labels that make a container kept: the developer's, no longer the project's."""
    return {
        names.PROJECT_LABEL: None,
        names.OWNER_LABEL: None,
        KEPT_LABEL: project,
        KEPT_AT_LABEL: when.isoformat(timespec="seconds"),
    }


class _Steps:
    """Steps done so far, each with its undo; `undo_all` runs them in reverse."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Undo]] = []

    def done(self, what: str, undo: Undo) -> None:
        self._undo.append((what, undo))

    def undo_all(self) -> None:
        for what, undo in reversed(self._undo):
            try:
                undo()
            except Exception as exc:  # keep undoing: the rest may still bring the old one back
                say(f"container: could not undo {what}: {exc}")
        self._undo.clear()


def put_in_place(
    backend: ContainerBackend,
    new: Instance,
    name: str,
    project: str,
    *,
    stop: Stop,
    port: int | None,
    pick_port: Callable[[str], int],
    now: datetime.datetime | None = None,
    wait_free: Callable[[int], None] = lambda port: None,
) -> Kept | None:
    """Swap the ready container `new` in as `name`; keep (stopped, renamed) what was there.

    `port` is the ssh port the container at `name` listens on (None: no ssh device);
    `pick_port(kept_name)` gives the kept container a port of its own; `wait_free(port)`
    returns once a stopped container's listener has let go of the port: a container that
    powered itself off is Stopped before LXD's stop hook has stopped its devices, and a
    rename before that hook makes it fail ("Instance not found"), leaving the listener
    behind for good. On failure the old container is back under `name`, running if it
    was, and the error is raised.
    """
    when = now or datetime.datetime.now()
    temporary = new.name
    old = backend.instance(name)
    steps = _Steps()
    try:
        stop(new)
        kept = None
        if old is not None:
            kept = _keep(backend, old, name, project, when, stop, pick_port, wait_free, steps)
        new.rename(name)
        steps.done(f"renaming {temporary} to {name}", lambda: new.rename(temporary))
        if port is not None:
            new.update(devices={SSH_DEVICE: ssh_device(port)})
            wait_free(port)
        new.start()
        return kept
    except BaseException:
        say(f"container: {name} could not be put in place; bringing the old one back")
        _stop_quietly(new, stop)
        steps.undo_all()
        raise


def _keep(
    backend: ContainerBackend,
    old: Instance,
    name: str,
    project: str,
    when: datetime.datetime,
    stop: Stop,
    pick_port: Callable[[str], int],
    wait_free: Callable[[int], None],
    steps: _Steps,
) -> Kept:
    """Stop the old container (and let LXD finish stopping it), rename and relabel it,
    give it its own ssh port."""
    was_running = old.status == "Running"
    device = old.devices.get(SSH_DEVICE)
    if was_running:
        stop(old)
        steps.done(f"stopping {name}", old.start)
        listening = None if device is None else ports.listen_port(device)
        if listening is not None:
            wait_free(listening)  # LXD's stop hook is done: the rename cannot break it
    taken = set(backend.instance_names(name))
    target = kept_name(name, when, taken)
    old.rename(target)
    steps.done(f"renaming {name} to {target}", lambda: old.rename(name))
    labels = dict(old.config)
    old.update(config=kept_labels(project, when))
    restore: dict[str, str | None] = {k: labels.get(k) for k in kept_labels(project, when)}
    steps.done(f"relabelling {target}", lambda: old.update(config=restore))
    kept_port = None
    if device is not None:
        kept_port = pick_port(target)
        old.update(devices={SSH_DEVICE: ssh_device(kept_port)})
        before: Mapping[str, str] = dict(device)
        steps.done(
            f"changing the ssh port of {target}", lambda: old.update(devices={SSH_DEVICE: before})
        )
    return Kept(target, kept_port)


def _stop_quietly(box: Instance, stop: Stop) -> None:
    """Stop a container whatever state it is in (failures are only reported)."""
    try:
        if box.status != "Stopped":
            stop(box)
    except (EdibuildError, OSError) as exc:
        say(f"container: could not stop {box.name}: {exc}")
