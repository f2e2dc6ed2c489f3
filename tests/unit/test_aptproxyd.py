"""The long-lived apt proxy: started detached, found again, told new hosts, stopped."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edibuild.dev import ports
from edibuild.lxd import aptproxyd
from edibuild.run import run


def choose(seed: str) -> int:
    return ports.choose(seed, base=ports.PROXY_BASE, span=ports.PROXY_SPAN)


def start(argv: list[str], log: Path) -> None:
    run(argv, log=log)


@pytest.fixture()
def state(tmp_path: Path) -> Iterator[Path]:
    """A state folder whose proxy is stopped after the test, whatever happened."""
    folder = tmp_path / aptproxyd.STATE_NAME
    yield folder
    aptproxyd.stop(folder)


def ask(port: int, url: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", url)
    return conn.getresponse().status


def test_proxy_lives_on_its_own_and_stops(state: Path, tmp_path: Path) -> None:
    daemon = aptproxyd.ensure(state, tmp_path / "cache", ["deb.debian.org"], choose, start)
    assert daemon.started and aptproxyd.running(state) == daemon.pid != os.getpid()
    assert aptproxyd.port(state) == daemon.port
    assert ask(daemon.port, "http://example.org/x") == 403  # not a mirror of ours
    again = aptproxyd.ensure(state, tmp_path / "cache", ["security.debian.org"], choose, start)
    assert again == aptproxyd.Daemon(daemon.port, daemon.pid, started=False)
    assert aptproxyd.hosts(state) == ["deb.debian.org", "security.debian.org"]
    assert aptproxyd.stop(state) is True
    assert aptproxyd.running(state) is None and not (state / "pid").exists()
    assert aptproxyd.stop(state) is False
    assert "stopped" in (state / "log").read_text()
    restarted = aptproxyd.ensure(state, tmp_path / "cache", ["deb.debian.org"], choose, start)
    assert restarted.port == daemon.port and restarted.started  # the same port again


def test_a_stale_pid_file_is_no_proxy(state: Path) -> None:
    """A pid file naming another process (pid reuse) does not count as running."""
    state.mkdir()
    (state / "pid").write_text(f"{os.getpid()}\n")
    assert aptproxyd.running(state) is None


def test_no_mirror_no_proxy(state: Path, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no http:// mirror"):
        aptproxyd.ensure(state, tmp_path, [], choose, start)


def test_the_dev_containers_proxy_is_not_the_builds_so_the_next_build_leaves_it_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next build ends the processes of ended builds (orphans.end_orphans); the proxy
    the container stage starts must outlive its build, so it must not carry the mark."""
    from edibuild import orphans
    from edibuild.dev import apt

    monkeypatch.setenv("EDIBUILD_CACHE", str(tmp_path / "cache"))
    folder, daemon = apt.apt_proxy(["http://deb.debian.org/"])
    try:
        assert daemon.started and orphans.alive(daemon.pid)
        assert orphans.owner_of(daemon.pid) is None
        assert daemon.pid not in {o.pid for o in orphans.find()}
    finally:
        aptproxyd.stop(folder)
