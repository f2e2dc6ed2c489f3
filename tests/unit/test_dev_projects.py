"""The shipped development projects: made from the image's shared files, no disk image."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edibuild.config import Host, load_project
from edibuild.config.project import Project
from edibuild.engine.pipeline import Pipeline
from stages import all_stages, bootstrap, configure

PROJECTS = Path(__file__).resolve().parents[2] / "projects"
HOST = Host(architecture="amd64", user="tester", hostname="testhost")
IMAGE_STAGES = ["bootstrap", "import", "configure", "export"]


def load(name: str) -> Project:
    return load_project(PROJECTS / f"{name}.yml", shipped_dir=PROJECTS, host=HOST)


@pytest.mark.parametrize("suite", ["bookworm", "buster"])
def test_emulated_container_shares_the_images_bootstrap(suite: str) -> None:
    """Same bootstrap slice and plugins as the image: one cache entry for both."""
    image, dev = load(f"pi3-{suite}-arm64"), load(f"pi3-{suite}-arm64-dev")
    assert bootstrap.STAGE.config(dev) == bootstrap.STAGE.config(image)
    assert bootstrap.STAGE.plugins(dev) == bootstrap.STAGE.plugins(image)


@pytest.mark.parametrize("suite", ["bookworm", "buster"])
def test_cross_container_bootstraps_the_host_from_the_same_suite_and_mirror(suite: str) -> None:
    image, cross = load(f"pi3-{suite}-arm64"), load(f"pi3-{suite}-arm64-cross-dev")
    assert cross.bootstrap.architecture == HOST.architecture
    for field in ("suite", "mirror", "components", "keyring", "packages", "variant"):
        assert getattr(cross.bootstrap, field) == getattr(image.bootstrap, field), field
    params = {n.key: n.parameters for n in cross.playbooks}["100_base_system"]
    assert params == {n.key: n.parameters for n in image.playbooks}["100_base_system"]


@pytest.mark.parametrize(
    "name",
    [
        "pi3-bookworm-arm64-cross-dev",
        "pi3-bookworm-arm64-dev",
        "pi3-buster-arm64-cross-dev",
        "pi3-buster-arm64-dev",
    ],
)
def test_dev_projects_build_no_disk_image(name: str) -> None:
    """No layout, Mender or boot test: `image:NAME` stops at export; the container is there."""
    project = load(name)
    assert project.layout is None and project.mender is None and project.boottest is None
    enabled = [s.name for s in Pipeline(all_stages()).enabled(project)]
    assert enabled == [*IMAGE_STAGES, "container"]
    keys = [n.key for n in project.playbooks]
    assert "200_raspberry_pi" not in keys and "100_base_system" in keys
    assert project.container.target == name.removesuffix("-cross-dev").removesuffix("-dev")
    assert configure.STAGE.config(project)  # every slice computes


def test_the_two_kinds_differ_where_they_must() -> None:
    """Cross: toolchain, target libraries, services on, ssh. Emulated: services off, no ssh."""
    cross, emulated = load("pi3-bookworm-arm64-cross-dev"), load("pi3-bookworm-arm64-dev")
    keys = [n.key for n in cross.playbooks]
    assert keys == ["100_base_system", "300_cross_toolchain", "900_cleanup"]  # services on
    assert cross.parameters["cross_packages"] == ["zlib1g-dev", "libssl-dev"]
    assert cross.container.ssh is True
    emulated_keys = {n.key: n for n in emulated.playbooks}
    assert "010_no_service_start" in emulated_keys and "990_services_allowed" not in emulated_keys
    assert emulated_keys["300_dev_tools"].parameters == {"services_off": True}
    assert emulated.container.ssh is False


def test_the_image_projects_are_unchanged_by_the_split() -> None:
    """The image still has its firmware, kernel, layout and the services playbook last."""
    image = load("pi3-bookworm-arm64")
    assert [n.key for n in image.playbooks] == [
        "010_no_service_start", "100_base_system", "200_raspberry_pi", "900_cleanup",
        "990_services_allowed",
    ]  # fmt: skip
    assert image.layout is not None and image.mender is not None and image.boottest is not None


def test_a_change_to_the_shared_part_reaches_all_three_and_only_what_it_touches(
    tmp_path: Path,
) -> None:
    """A base_system parameter in raspberry-pi-base.yml: configure of the image and of both
    dev projects changes, their bootstraps do not."""
    names = ["pi3-bookworm-arm64", "pi3-bookworm-arm64-cross-dev", "pi3-bookworm-arm64-dev"]
    shutil.copytree(PROJECTS, tmp_path / "projects")
    base = tmp_path / "projects" / "common" / "raspberry-pi-base.yml"
    text = base.read_text()
    old = "    parameters:\n      hostname:"
    assert old in text
    base.write_text(text.replace(old, "    parameters:\n      tz: UTC\n      hostname:"))
    for name in names:
        before = load(name)
        after = load_project(tmp_path / "projects" / f"{name}.yml",
                             shipped_dir=tmp_path / "projects", host=HOST)  # fmt: skip
        assert bootstrap.STAGE.config(after) == bootstrap.STAGE.config(before), name
        assert configure.STAGE.config(after) != configure.STAGE.config(before), name
