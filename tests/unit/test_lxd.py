"""The backend's pure parts: image metadata, devices, the boot wait, the ws4py traceback."""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Sequence

import pytest
import yaml

from edibuild.errors import StageFailed
from edibuild.lxd import boot, devices, metadata
from edibuild.lxd.protocol import Executed


def test_metadata_tarball_is_reproducible() -> None:
    """The metadata tarball holds metadata.yaml and is byte-identical for equal input."""
    props = {"os": "debian", "release": "bookworm"}
    data = metadata.metadata_tarball("x86_64", 1700000000, props)
    assert data == metadata.metadata_tarball("x86_64", 1700000000, props)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("metadata.yaml")
        assert member is not None
        meta = yaml.safe_load(member.read())
        assert tar.getmember("metadata.yaml").mtime == 1700000000
    assert meta == {"architecture": "x86_64", "creation_date": 1700000000, "properties": props}


def test_architecture_falls_back_to_the_servers_own() -> None:
    """arm64 on an x86_64 server runs under qemu-user: the image says x86_64."""
    assert metadata.architecture("arm64", ["aarch64", "armv7l"]) == "aarch64"
    assert metadata.architecture("arm64", ["x86_64", "i686"]) == "x86_64"
    assert metadata.architecture("amd64", []) == "x86_64"


def test_devices() -> None:
    """The proxy device listens inside the instance; a disk shares a host folder."""
    assert devices.proxy(40000) == {
        "type": "proxy",
        "bind": "instance",
        "listen": "tcp:127.0.0.1:3142",
        "connect": "tcp:127.0.0.1:40000",
    }
    assert devices.disk("/srv/work", "/home/edi/work") == {
        "type": "disk",
        "source": "/srv/work",
        "path": "/home/edi/work",
    }


class FakeSystemd:
    """Answers systemctl like a container whose boot goes through the given states."""

    def __init__(self, states: list[str], jobs: str, code: int = 1, cancel: int = 0) -> None:
        self.states, self.jobs, self.code, self.cancel = states, jobs, code, cancel
        self.asked: list[str] = []
        self.cancelled: list[str] = []

    def __call__(self, argv: Sequence[str]) -> Executed:
        """Answer `is-system-running` (next state, the last one repeats), `list-jobs` and
        `cancel` (which lets the boot go on: the state after it is the next one)."""
        self.asked.append(argv[1])
        if argv[1] == "is-system-running":
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return Executed(self.code, state.encode() + b"\n", b"")
        if argv[1] == "cancel":
            self.cancelled += argv[2:]
            return Executed(self.cancel, b"", b"")
        return Executed(0, self.jobs.encode(), b"")


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


DEVICE_JOBS = (
    "54 data.mount                                     start waiting\n"
    "55 systemd-fsck@dev-disk-by\\x2dlabel-data.service start waiting\n"
    "56 dev-disk-by\\x2dlabel-data.device               start running\n"
)
SERVICE_JOB = "57 ssh.service start running\n"


def wait(systemd: FakeSystemd, timeout: float = 120) -> FakeClock:
    clock = FakeClock()
    boot.wait_for_boot(systemd, "box", timeout, clock=clock, sleep=clock.sleep)
    return clock


def test_booted_states_end_the_wait_at_once() -> None:
    for state in ("running", "degraded", "maintenance"):
        systemd = FakeSystemd([state], "")
        assert wait(systemd).now == 0
        assert systemd.asked == ["is-system-running"]
    assert wait(FakeSystemd(["starting"], "", code=127)).now == 0  # no systemctl at all


def test_boot_waiting_only_for_an_fstab_device_has_those_jobs_cancelled() -> None:
    """Twice in a row nothing but a device job running: it is cancelled and the boot ends
    now, not after the 90 s systemd waits for a device a container never gets."""
    systemd = FakeSystemd(["starting", "starting", "degraded"], DEVICE_JOBS)
    clock = wait(systemd)
    assert systemd.asked == ["is-system-running", "list-jobs"] * 2 + ["cancel", "is-system-running"]
    assert systemd.cancelled == ["56"]
    assert clock.now == pytest.approx(boot.POLL)  # one look between the two, none after


def test_early_boot_held_by_a_unit_after_an_fstab_mount_is_let_go() -> None:
    """Mender's tmpfiles run waits for /data: systemd stays `initializing` for 90 s."""
    jobs = (
        "23 systemd-fsck@dev-disk-by\\x2dlabel-data.service start waiting\n"
        "75 timers.target start waiting\n"
        "41 dev-disk-by\\x2dlabel-data.device start running\n"
        "20 dev-disk-by\\x2dlabel-ESP.device start running\n"
    )
    systemd = FakeSystemd(["initializing", "initializing", "running"], jobs)
    assert wait(systemd).now == pytest.approx(boot.POLL)
    assert systemd.cancelled == ["41", "20"]


def test_a_device_wait_systemd_will_not_cancel_counts_as_booted() -> None:
    systemd = FakeSystemd(["starting"], DEVICE_JOBS, cancel=1)
    assert wait(systemd).now == pytest.approx(boot.POLL)
    assert systemd.asked[-1] == "cancel"


def test_boot_with_a_service_still_starting_is_waited_for() -> None:
    """A running service job means the boot is still going on: the wait times out."""
    systemd = FakeSystemd(["starting"], DEVICE_JOBS + SERVICE_JOB)
    with pytest.raises(StageFailed, match="box did not finish booting within 3 s"):
        wait(systemd, timeout=3)
    assert systemd.asked.count("is-system-running") == round(3 / boot.POLL)


def test_boot_that_finishes_later_is_waited_for() -> None:
    systemd = FakeSystemd(["starting", "starting", "starting", "running"], SERVICE_JOB)
    assert wait(systemd).now == pytest.approx(3 * boot.POLL)
    assert systemd.asked.count("is-system-running") == 4


def _hook_args(name: str, error: Exception) -> threading.ExceptHookArgs:
    thread = threading.Thread(name=name)
    return threading.ExceptHookArgs((type(error), error, None, thread))


def test_ws4py_closed_poller_traceback_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harmless ws4py thread error stays off the console; other thread errors show."""
    from edibuild.lxd import client

    shown: list[str] = []
    monkeypatch.setattr(
        client, "_previous_excepthook", lambda args: shown.append(str(args.exc_value))
    )
    client._quiet_websocket_manager(_hook_args("WebSocketManager", ValueError("closed epoll")))
    client._quiet_websocket_manager(_hook_args("worker", RuntimeError("a real problem")))
    assert shown == ["a real problem"]
