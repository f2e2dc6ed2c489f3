"""The rename dance against a fake backend: the old container is kept, a failure brings it back."""

from __future__ import annotations

import datetime

import pytest

from edibuild.dev import swap
from edibuild.lxd.errors import Refused
from edibuild.lxd.names import OWNER_LABEL, PROJECT_LABEL
from edibuild.lxd.protocol import Instance
from tests.fake_backend import FakeBackend, FakeInstance

NAME = "edibuild-dev-demo"
WHEN = datetime.datetime(2026, 5, 1, 12, 30, 0)


def stop(box: Instance) -> None:
    box.stop()


def backend_with_new() -> tuple[FakeBackend, FakeInstance]:
    """A backend holding a new, running container under its temporary name."""
    backend = FakeBackend()
    new = backend.add_instance(swap.temporary_name(NAME, "beef"), **{PROJECT_LABEL: "demo"})
    new.status = "Running"
    return backend, new


def add_old(backend: FakeBackend, port: int = 42304) -> FakeInstance:
    old = backend.add_instance(NAME, **{PROJECT_LABEL: "demo", "user.edibuild.dev-key": "k1"})
    old.status = "Running"
    old.devices[swap.SSH_DEVICE] = swap.ssh_device(port)
    old.devices["edibuild-workspace"] = {"type": "disk", "source": "/w", "path": "/w"}
    return old


def put(backend: FakeBackend, new: FakeInstance, port: int | None = 42304) -> swap.Kept | None:
    return swap.put_in_place(
        backend, new, NAME, "demo", stop=stop, port=port, pick_port=lambda n: 42777, now=WHEN
    )


def test_names_fit_lxd() -> None:
    """Temporary and kept names stay within 63 characters and never end the base in '-'."""
    long = "a" * 60 + "-bc"
    assert len(swap.temporary_name(long)) <= 63 and swap.temporary_name(long, "abcd").endswith(
        "-new-abcd"
    )
    assert swap.temporary_name(NAME, "abcd").startswith(swap.temporary_prefix(NAME))
    kept = swap.kept_name(long, WHEN, ())
    assert len(kept) <= 63 and kept.endswith("-old-20260501-123000") and "--" not in kept
    taken = {swap.kept_name(NAME, WHEN, ())}
    assert swap.kept_name(NAME, WHEN, taken).endswith("-old-20260501-123000-2")


def test_first_container_is_renamed_into_place_with_its_port() -> None:
    backend, new = backend_with_new()
    assert put(backend, new) is None
    assert list(backend.instances) == [NAME] and new.status == "Running"
    assert new.devices[swap.SSH_DEVICE]["listen"] == "tcp:127.0.0.1:42304"


def test_the_old_container_is_stopped_renamed_relabelled_and_given_its_own_port() -> None:
    backend, new = backend_with_new()
    old = add_old(backend)
    kept = put(backend, new)
    assert kept == swap.Kept(f"{NAME}-old-20260501-123000", 42777)
    assert backend.instances[NAME] is new and new.status == "Running"
    assert new.devices[swap.SSH_DEVICE]["listen"] == "tcp:127.0.0.1:42304"
    assert backend.instances[kept.name] is old and old.status == "Stopped"
    assert old.devices[swap.SSH_DEVICE]["listen"] == "tcp:127.0.0.1:42777"
    assert old.devices["edibuild-workspace"]["source"] == "/w"  # everything else kept
    assert PROJECT_LABEL not in old.config and OWNER_LABEL not in old.config
    assert old.config[swap.KEPT_LABEL] == "demo" and old.config["user.edibuild.dev-key"] == "k1"


def test_a_stopped_old_container_stays_stopped_and_is_kept_too() -> None:
    backend, new = backend_with_new()
    old = add_old(backend)
    old.status = "Stopped"
    kept = put(backend, new)
    assert kept is not None and "stop" not in old.calls


@pytest.mark.parametrize("fails", ["start", "rename", "update"])
def test_a_failure_leaves_the_old_container_running_as_it_was(fails: str) -> None:
    """Whichever step fails, the old one is back under its name, running, unchanged."""
    backend, new = backend_with_new()
    old = add_old(backend)
    before = (dict(old.config), {k: dict(v) for k, v in old.devices.items()})
    new.fail_on.add(fails)
    with pytest.raises(Refused, match="on purpose"):
        put(backend, new)
    assert backend.instances[NAME] is old and old.status == "Running"
    assert (old.config, old.devices) == before
    assert new.name == swap.temporary_name(NAME, "beef") and new.status == "Stopped"


def test_a_failure_while_keeping_the_old_one_brings_it_back() -> None:
    """Relabelling the old container fails: it is renamed back and started again."""
    backend, new = backend_with_new()
    old = add_old(backend)
    old.fail_on.add("update")
    with pytest.raises(Refused):
        put(backend, new)
    assert backend.instances[NAME] is old and old.status == "Running"
    assert PROJECT_LABEL in old.config


def test_no_ssh_port_means_no_device() -> None:
    backend, new = backend_with_new()
    put(backend, new, port=None)
    assert swap.SSH_DEVICE not in new.devices


def test_the_port_is_let_go_before_the_old_one_is_renamed_and_the_new_one_starts() -> None:
    """A container that powered itself off keeps its listener until LXD's stop hook ran; a
    rename before that breaks the hook: wait for the port after the stop, before the rename."""
    backend, new = backend_with_new()
    old = add_old(backend)
    waited: list[tuple[int, str, str, str]] = []
    swap.put_in_place(
        backend, new, NAME, "demo", stop=stop, port=42304, pick_port=lambda n: 42777, now=WHEN,
        wait_free=lambda port: waited.append((port, old.name, old.status, new.status)),
    )  # fmt: skip
    assert waited == [(42304, NAME, "Stopped", "Stopped"),
                      (42304, f"{NAME}-old-20260501-123000", "Stopped", "Stopped")]  # fmt: skip
    assert new.status == "Running"
