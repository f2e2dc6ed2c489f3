"""The stages touch only what the ownership labels say is theirs (on a fake backend)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from edibuild.config.project import Bootstrap, Node, Project
from edibuild.dev import images
from edibuild.dev.instances import ours
from edibuild.errors import StageFailed
from edibuild.lxd import names
from edibuild.lxd.names import OWNER_LABEL, PROJECT_LABEL
from edibuild.lxd.protocol import Image
from stages import configure
from tests.fake_backend import FakeBackend

KEY = "0123456789abcdef" * 4


def project(name: str = "demo") -> Project:
    return Project(
        name=name,
        file=Path(f"{name}.yml"),
        description="",
        parameters={},
        bootstrap=Bootstrap("amd64", "bookworm", "http://deb.debian.org/debian"),
        lxd_profiles=(),
        playbooks=(),
        sections={},
    )


def gone_mark() -> str:
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}"


def test_configure_removes_only_its_projects_leftovers() -> None:
    backend = FakeBackend()
    prefix = names.configure_prefix("demo")
    dead, alive = gone_mark(), f"{socket.gethostname()}:{os.getppid()}"
    backend.add_instance(f"{prefix}a", **{PROJECT_LABEL: "demo", OWNER_LABEL: dead})
    backend.add_instance(f"{prefix}b", **{PROJECT_LABEL: "demo", OWNER_LABEL: alive})
    backend.add_instance(f"{prefix}c", **{OWNER_LABEL: dead})  # made before the project label
    backend.add_instance(f"{prefix}d", **{PROJECT_LABEL: "other", OWNER_LABEL: dead})
    backend.add_instance("edibuild-other-configure-e", **{OWNER_LABEL: dead})
    backend.profiles[f"{prefix}a-10-profile"] = {}
    backend.profiles[f"{prefix}b-10-profile"] = {}
    assert configure.remove_leftovers(backend, project()) == [
        f"container {prefix}a",
        f"container {prefix}c",
    ]
    assert sorted(backend.instances) == [
        f"{prefix}b",
        f"{prefix}d",
        "edibuild-other-configure-e",
    ]
    assert list(backend.profiles) == [f"{prefix}b-10-profile"]


def test_configure_profiles_carry_the_project_label(tmp_path: Path) -> None:
    plugin = tmp_path / "profile.yml"
    plugin.write_text("config: {limits.cpu: '1'}\ndescription: for {{ edibuild_suite }}\n")
    proj = Project(**{**project().__dict__, "lxd_profiles": (Node("10_p", plugin),)})
    backend = FakeBackend()
    made = configure.create_profiles(backend, proj, "box")
    assert made == ["box-10-p"]
    assert backend.profiles["box-10-p"]["config"] == {
        "limits.cpu": "1",
        PROJECT_LABEL: "demo",
        OWNER_LABEL: names.process_mark(),  # a killed run's profiles are told apart
    }
    assert backend.profiles["box-10-p"]["description"] == "for bookworm"


def test_dev_container_of_another_maker_is_never_touched() -> None:
    backend = FakeBackend()
    assert ours(backend, "edibuild-dev-demo", project()) is False
    backend.add_instance("edibuild-dev-demo", **{PROJECT_LABEL: "demo"})
    assert ours(backend, "edibuild-dev-demo", project()) is True
    backend.add_instance("mine")
    with pytest.raises(StageFailed, match="edibuild did not make it"):
        ours(backend, "mine", project())
    backend.add_instance("theirs", **{PROJECT_LABEL: "other"})
    with pytest.raises(StageFailed):
        ours(backend, "theirs", project())


def test_dev_images_of_similarly_named_projects_are_kept() -> None:
    backend = FakeBackend()
    old = backend.add_image(names.dev_image_alias("demo", KEY))
    keep = backend.add_image(names.dev_image_alias("demo", "f" * 64))
    other = backend.add_image(names.dev_image_alias("demo-x", KEY))
    layer = backend.add_image(names.layer_alias("demo", KEY))
    images.drop_old(backend, keep=keep.fingerprint, project=project())
    assert sorted(backend.store) == sorted([keep.fingerprint, other.fingerprint, layer.fingerprint])
    assert old.fingerprint not in backend.store


def test_configure_removes_profiles_and_unnamed_images_a_killed_run_left() -> None:
    backend = FakeBackend()
    prefix = names.configure_prefix("demo")
    dead, alive = gone_mark(), f"{socket.gethostname()}:{os.getppid()}"
    # Profiles made before the container (the run was killed in between).
    backend.profiles[f"{prefix}x-10-res"] = {"config": {PROJECT_LABEL: "demo", OWNER_LABEL: dead}}
    backend.profiles[f"{prefix}y-10-res"] = {"config": {PROJECT_LABEL: "demo", OWNER_LABEL: alive}}
    backend.profiles[f"{prefix}z-10-res"] = {"config": {PROJECT_LABEL: "other", OWNER_LABEL: dead}}
    backend.profiles["demo-configure-mine"] = {"config": {}}  # the user's own
    # Images published but never named: the export's temporary image, a layer.
    backend.store["fp-dead"] = Image("fp-dead", (), project="demo", owner=dead)
    backend.store["fp-alive"] = Image("fp-alive", (), project="demo", owner=alive)
    backend.store["fp-named"] = Image(
        "fp-named", ("edibuild-layer-demo-x",), project="demo", owner=dead
    )
    backend.store["fp-other"] = Image("fp-other", (), project="other", owner=dead)
    backend.store["fp-user"] = Image("fp-user", ())
    removed = configure.remove_leftovers(backend, project())
    assert removed == [f"profile {prefix}x-10-res", "image fp-dead"]
    assert sorted(backend.profiles) == [
        "demo-configure-mine",
        f"{prefix}y-10-res",
        f"{prefix}z-10-res",
    ]
    assert sorted(backend.store) == ["fp-alive", "fp-named", "fp-other", "fp-user"]
