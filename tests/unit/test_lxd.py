"""The LXD backend's pure parts: where LXD is looked for, names, metadata."""

from __future__ import annotations

import io
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

from edibuild.errors import StageFailed
from edibuild.lxd import client as lxd
from edibuild.project import Bootstrap, Project


def project(sections: dict[str, object]) -> Project:
    """A minimal project with the given sections."""
    return Project(
        name="p",
        file=Path("p.yml"),
        description="",
        parameters={},
        bootstrap=Bootstrap("amd64", "bookworm", "http://deb.debian.org/debian"),
        lxd_profiles=(),
        playbooks=(),
        sections=sections,
    )


def test_metadata_tarball_is_reproducible() -> None:
    """The metadata tarball holds metadata.yaml and is byte-identical for equal input."""
    props = {"os": "debian", "release": "bookworm"}
    data = lxd.metadata_tarball("x86_64", 1700000000, props)
    assert data == lxd.metadata_tarball("x86_64", 1700000000, props)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("metadata.yaml")
        assert member is not None
        meta = yaml.safe_load(member.read())
    assert meta == {"architecture": "x86_64", "creation_date": 1700000000, "properties": props}


def test_proxy_device() -> None:
    """The proxy device binds inside the instance."""
    assert lxd.proxy_device(40000) == {
        "type": "proxy",
        "bind": "instance",
        "listen": "tcp:127.0.0.1:3142",
        "connect": "tcp:127.0.0.1:40000",
    }


class FakeSystemd:
    """Answers systemctl like a container whose boot waits for the given jobs."""

    def __init__(self, state: str, jobs: str) -> None:
        self.name, self.state, self.jobs = "box", state, jobs

    def execute(self, argv: list[str]) -> tuple[int, bytes, bytes]:
        """Answer `is-system-running` and `list-jobs`."""
        if argv[1] == "is-system-running":
            return 1, self.state.encode() + b"\n", b""
        return 0, self.jobs.encode(), b""


DEVICE_JOBS = (
    "54 data.mount                                     start waiting\n"
    "55 systemd-fsck@dev-disk-by\\x2dlabel-data.service start waiting\n"
    "56 dev-disk-by\\x2dlabel-data.device               start running\n"
)


def test_boot_waiting_only_for_an_fstab_device_counts_as_booted() -> None:
    """A container blocked on the image's data partition is booted as far as it goes."""
    box = FakeSystemd("starting", DEVICE_JOBS)
    lxd._wait_for_boot(box, timeout=5)  # type: ignore[arg-type]


def test_boot_with_a_service_still_starting_is_waited_for() -> None:
    """A running service job means the boot is still going on: the wait times out."""
    box = FakeSystemd("starting", DEVICE_JOBS + "57 ssh.service start running\n")
    with pytest.raises(StageFailed, match="did not finish booting"):
        lxd._wait_for_boot(box, timeout=1.2)  # type: ignore[arg-type]


def _hook_args(name: str, error: Exception) -> threading.ExceptHookArgs:
    thread = threading.Thread(name=name)
    return threading.ExceptHookArgs((type(error), error, None, thread))


def test_ws4py_closed_poller_traceback_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harmless ws4py thread error stays off the console; other thread errors show."""
    shown: list[str] = []
    monkeypatch.setattr(lxd, "_previous_excepthook", lambda args: shown.append(str(args.exc_value)))
    lxd._quiet_websocket_manager(_hook_args("WebSocketManager", ValueError("closed epoll")))
    lxd._quiet_websocket_manager(_hook_args("worker", RuntimeError("a real problem")))
    assert shown == ["a real problem"]
