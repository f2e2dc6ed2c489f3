"""The cheap up-to-date probe and the raw unix-socket client under it (against a fake LXD)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edibuild.lxd import probe, unixhttp
from edibuild.lxd.errors import NotFound, Refused, Unreachable
from tests.fake_lxd import Status, serving, stale_socket

REPO = Path(__file__).resolve().parents[2]
FP = "ab" * 32


def test_get_returns_metadata_and_types_the_errors(short_tmp: Path) -> None:
    sock = short_tmp / "unix.socket"
    routes = {"/1.0": {"x": 1}, "/1.0/broken": Status(500, "database is locked")}
    with serving(sock, routes):
        assert unixhttp.get(sock, "/1.0") == {"x": 1}
        with pytest.raises(NotFound):
            unixhttp.get(sock, "/1.0/nothing")
        with pytest.raises(Refused, match="database is locked") as caught:
            unixhttp.get(sock, "/1.0/broken")
        assert not isinstance(caught.value, NotFound)
    with pytest.raises(Unreachable):  # nobody listens any more
        unixhttp.get(sock, "/1.0")


def test_something_else_on_the_socket_is_unreachable(short_tmp: Path) -> None:
    stale_socket(short_tmp / "stale.socket")
    with pytest.raises(Unreachable, match="nothing answers"):
        unixhttp.request(short_tmp / "stale.socket", "/1.0")
    with pytest.raises(Unreachable):
        unixhttp.request(short_tmp / "missing.socket", "/1.0")


def test_probe_tells_present_from_absent(short_tmp: Path) -> None:
    env = {"LXD_DIR": str(short_tmp)}
    routes = {f"/1.0/images/{FP}": {"fingerprint": FP}, "/1.0/instances/box": {"name": "box"}}
    with serving(short_tmp / "unix.socket", routes) as server:
        assert probe.image_exists(None, FP, env)
        assert not probe.image_exists(None, "cd" * 32, env)
        assert probe.instance_exists(None, "box", env)
        assert not probe.instance_exists(None, "gone", env)
        assert not probe.image_exists(None, "", env)  # nothing recorded: not asked at all
    assert server.asked == [
        f"/1.0/images/{FP}",
        f"/1.0/images/{'cd' * 32}",
        "/1.0/instances/box",
        "/1.0/instances/gone",
    ]


def test_a_daemon_that_cannot_be_asked_is_an_error_not_absent(short_tmp: Path) -> None:
    """No daemon, or one answering with an error: never "gone" (that would rebuild)."""
    env = {"LXD_DIR": str(short_tmp / "none")}
    with pytest.raises(Unreachable) as caught:
        probe.image_exists(None, FP, env, root=short_tmp)
    assert caught.value.hint and "lxd init" in caught.value.hint
    broken = {f"/1.0/images/{FP}": Status(500)}
    with serving(short_tmp / "unix.socket", broken), pytest.raises(Refused):
        probe.image_exists(None, FP, {"LXD_DIR": str(short_tmp)})


def test_up_to_date_checks_do_not_import_pylxd(short_tmp: Path) -> None:
    """The import and container stages' `intact` answer through the socket, without pylxd;
    a dev container made for other inputs (another key label) is not intact."""
    running = {"status": "Running", "config": {"user.edibuild.dev-key": "k1"}}
    routes = {f"/1.0/images/{FP}": {}, "/1.0/instances/dev": running}
    script = f"""
import json, sys
from pathlib import Path
from edibuild.config.project import Bootstrap, Project
from stages import all_stages
stages = {{s.name: s for s in all_stages()}}
project = Project(name="p", file=Path("p.yml"), description="", parameters={{}},
                  bootstrap=Bootstrap("amd64", "bookworm", "http://deb.debian.org/debian"),
                  lxd_profiles=(), playbooks=(), sections={{}})
answers = [
    stages["import"].intact(project, {{"fingerprint": "{FP}"}}),
    stages["import"].intact(project, {{"fingerprint": "{"cd" * 32}"}}),
    stages["container"].intact(project, {{"name": "dev", "key": "k1"}}),
    stages["container"].intact(project, {{"name": "dev", "key": "k2"}}),
    stages["container"].intact(project, {{"name": "other", "key": "k1"}}),
]
print(json.dumps({{"answers": answers, "pylxd": "pylxd" in sys.modules}}))
"""
    env = {**os.environ, "LXD_DIR": str(short_tmp)}
    env.pop("EDIBUILD_LXD_REMOTE", None)
    with serving(short_tmp / "unix.socket", routes):
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
        )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "answers": [True, False, True, False, False],
        "pylxd": False,
    }
