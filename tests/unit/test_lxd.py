"""The LXD backend's pure parts: where LXD is looked for, names, metadata."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml

from edibuild import lxd
from edibuild.errors import StageFailed
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


def test_lxd_dir_comes_first(tmp_path: Path) -> None:
    """LXD_DIR's socket is tried before the well-known sockets."""
    found = lxd.candidates(None, {"LXD_DIR": str(tmp_path)})
    assert found[0] == lxd.Endpoint(str(tmp_path / "unix.socket"))


def test_remote_from_project_wins_over_environment() -> None:
    """A project's remote (with client cert) is the only candidate."""
    proj = project(
        {
            "lxd": {
                "remote": "https://lxd.example:8443",
                "cert": "c.crt",
                "key": "c.key",
                "verify": False,
            }
        }
    )
    found = lxd.candidates(proj, {"EDIBUILD_LXD_REMOTE": "https://other:8443"})
    assert found == [lxd.Endpoint("https://lxd.example:8443", ("c.crt", "c.key"), False)]
    assert not found[0].is_local


def test_remote_from_environment() -> None:
    """EDIBUILD_LXD_REMOTE and its certificate variables are honoured."""
    env = {
        "EDIBUILD_LXD_REMOTE": "https://r:8443",
        "EDIBUILD_LXD_CERT": "a",
        "EDIBUILD_LXD_KEY": "b",
        "EDIBUILD_LXD_VERIFY": "no",
    }
    assert lxd.candidates(project({}), env) == [lxd.Endpoint("https://r:8443", ("a", "b"), False)]


def test_no_daemon_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When nothing answers, the error says how to install, start and initialise LXD."""
    monkeypatch.setattr(lxd, "SOCKETS", ())
    with pytest.raises(StageFailed) as caught:
        lxd.find_endpoint(None, {"LXD_DIR": str(tmp_path)})
    text = str(caught.value)
    assert "no LXD daemon answers" in text and str(tmp_path) in text
    assert "apt-get install lxd" in text and "lxd init" in text


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


def test_safe_names_and_proxy_device() -> None:
    """Instance names are lowercase and hyphenated; the proxy device binds inside."""
    assert lxd.safe_name("Pi3_Bookworm.arm64") == "pi3-bookworm-arm64"
    assert lxd.proxy_device(40000) == {
        "type": "proxy",
        "bind": "instance",
        "listen": "tcp:127.0.0.1:3142",
        "connect": "tcp:127.0.0.1:40000",
    }
