"""Where edibuild looks for LXD: one candidate list for the build and for host setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from edibuild.lxd import endpoints
from edibuild.lxd.endpoints import Endpoint
from edibuild.lxd.errors import Unreachable
from tests.fake_lxd import serving, stale_socket

REMOTE = {"remote": "https://lxd.example:8443", "cert": "c.crt", "key": "c.key", "verify": False}


def test_local_candidates_in_order(tmp_path: Path) -> None:
    """$LXD_DIR, $INCUS_DIR, Debian's, the snap's, Incus' socket; each with its admin tool."""
    env = {"LXD_DIR": "/srv/lxd", "INCUS_DIR": "/srv/incus"}
    found = endpoints.candidates(None, env, root=tmp_path)
    assert [e.socket for e in found] == [
        Path("/srv/lxd/unix.socket"),
        Path("/srv/incus/unix.socket"),
        tmp_path / "var/lib/lxd/unix.socket",
        tmp_path / "var/snap/lxd/common/lxd/unix.socket",
        tmp_path / "var/lib/incus/unix.socket",
    ]
    assert [e.kind for e in found] == ["lxd", "incus", "lxd", "lxd", "incus"]
    assert found[1].env == {"INCUS_DIR": "/srv/incus"}
    assert found[1].command("init", "--preseed") == ["incus", "admin", "init", "--preseed"]
    assert found[0].command("waitready") == ["lxd", "waitready"]
    assert [e.origin for e in endpoints.candidates(None, {}, root=tmp_path)] == [
        "the Debian package",
        "the snap",
        "Incus",
    ]


def test_remote_from_project_is_the_only_candidate(tmp_path: Path) -> None:
    """A project's remote (with client cert) wins over the environment and local sockets."""
    env = {"EDIBUILD_LXD_REMOTE": "https://other:8443", "LXD_DIR": str(tmp_path)}
    found = endpoints.candidates(REMOTE, env)
    assert len(found) == 1 and not found[0].is_local
    assert (found[0].url, found[0].cert, found[0].verify) == (
        "https://lxd.example:8443",
        ("c.crt", "c.key"),
        False,
    )


@pytest.mark.parametrize(
    ("text", "verify"), [("no", False), ("0", False), ("True", True), ("/ca.pem", "/ca.pem")]
)
def test_remote_from_environment(text: str, verify: bool | str) -> None:
    """EDIBUILD_LXD_REMOTE and its variables; VERIFY is a yes/no word or a CA bundle path."""
    env = {
        "EDIBUILD_LXD_REMOTE": "https://r:8443",
        "EDIBUILD_LXD_CERT": "a",
        "EDIBUILD_LXD_KEY": "b",
        "EDIBUILD_LXD_VERIFY": text,
    }
    (found,) = endpoints.candidates({}, env)
    assert (found.url, found.cert, found.verify) == ("https://r:8443", ("a", "b"), verify)


def test_endpoint_survives_the_trip_to_the_ansible_process() -> None:
    remote = endpoints.remote(REMOTE, {})
    assert remote is not None
    again = Endpoint.from_json(remote.as_json())
    assert (again.url, again.cert, again.verify) == (remote.url, remote.cert, remote.verify)
    local = Endpoint.from_json(Endpoint.local(Path("/x/unix.socket")).as_json())
    assert local.is_local and local.socket == Path("/x/unix.socket") and local.cert is None


def test_first_answering_socket_is_used(short_tmp: Path) -> None:
    """A stale socket (a crashed daemon's) and a missing one are skipped."""
    env = {"LXD_DIR": str(short_tmp / "mine")}
    tried = endpoints.candidates(None, env, root=short_tmp)
    stale_socket(tried[0].socket)
    with serving(tried[2].socket, {"/1.0": {}}):  # the snap's; Debian's does not exist
        assert endpoints.find_endpoint(None, env, root=short_tmp) == tried[2]


def test_lxd_dir_comes_first(short_tmp: Path) -> None:
    env = {"LXD_DIR": str(short_tmp / "mine")}
    tried = endpoints.candidates(None, env, root=short_tmp)
    with serving(tried[0].socket, {"/1.0": {}}), serving(tried[1].socket, {"/1.0": {}}):
        assert endpoints.find_endpoint(None, env, root=short_tmp) == tried[0]


def test_no_daemon_is_unreachable_with_the_install_hint(short_tmp: Path) -> None:
    """Nothing answers: an Unreachable naming every socket tried, with how to get LXD."""
    env = {"LXD_DIR": str(short_tmp / "mine")}
    with pytest.raises(Unreachable) as caught:
        endpoints.find_endpoint(None, env, root=short_tmp)
    text = str(caught.value)
    assert "no LXD daemon answers" in text and str(short_tmp / "mine/unix.socket") in text
    assert "apt-get install lxd" in text and "lxd init" in text and "lxd --group root" in text


def test_a_remote_endpoint_is_not_contacted_while_looking(tmp_path: Path) -> None:
    """find_endpoint names the remote; the client checks it (and its certificates) later."""
    assert endpoints.find_endpoint(REMOTE, {}, root=tmp_path).url == REMOTE["remote"]
