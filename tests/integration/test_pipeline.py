"""The shipped qemu-bookworm-amd64 project end to end through the real `doit`.

bootstrap -> import -> configure -> export -> partitions -> disk -> bmap -> mender, and
`doit boottest:NAME` booting the result; then the rebuild rules of `doit image:NAME`
(which does not boot): a second run runs nothing, a layout edit reruns only
the image stages, a playbook edit reruns configure (and what its output changes), and
`doit clean image:NAME --forget` rebuilds only the image outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool
from tests.workspace import REPO, DoitWorkspace

pytestmark = pytest.mark.integration

NAME = "qemu-bookworm-amd64"
# What `image:NAME` runs after the root file system (the boot test is a task of its own:
# a boot costs ~1 min, and the cold build's boot proves the image boots).
IMAGE_STAGES = ["partitions", "disk", "bmap", "mender"]
OUTPUTS = [f"image:{NAME}"]
UNBOOTED = IMAGE_STAGES


class Build(DoitWorkspace):
    """The shipped projects in a private workspace, with the session's cache."""

    def __init__(self, tmp: Path, cache: Path) -> None:
        super().__init__(tmp, REPO / "projects", cache)
        self.artifacts_dir = self.artifacts(NAME)
        # Never the user's own dev container of this project: a name of the test's own;
        # root's (no developer account: test_dev_container.py has that), a private workspace.
        (self.projects / "overlays" / "global.yml").write_text(
            f"container: {{name: edibuild-test-dev-{os.getpid()}, user: root, "
            f"workspace: {tmp / 'workspace'}}}\n"
        )


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Build:
    require_root()
    require_tool(
        "mmdebstrap",
        "lxc",
        "mkfs.ext4",
        "sfdisk",
        "bmaptool",
        "mender-artifact",
        "qemu-system-x86_64",
    )
    return Build(tmp_path_factory.mktemp("pipeline"), shared_cache)


def test_cold_build_makes_every_artifact_and_boots(build: Build) -> None:
    assert "boottest" not in build.ran(f"image:{NAME}")
    assert build.ran(f"boottest:{NAME}") == ["boottest"]
    for name in (f"{NAME}.img", f"{NAME}.bmap", f"{NAME}.mender", "rootfs.tar.zst"):
        assert (build.artifacts_dir / name).stat().st_size > 0, name
    result = json.loads((build.artifacts_dir / "boottest.json").read_text())
    assert result["booted"] is True
    artifact = subprocess.run(
        ["mender-artifact", "read", build.artifacts_dir / f"{NAME}.mender"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{NAME}-dev" in artifact and "qemux86-64" in artifact
    # Ansible's modules ran with the bytecode cache, which stayed out of the image.
    configure = json.loads((build.artifacts_dir / "configure.manifest.json").read_text())
    assert configure["info"]["python_bytecode_cached"] > 20
    # LXD here has a dir pool: the container was read from it, not published.
    assert configure["info"]["exported_from"] == "storage pool"
    made = [layer["made_from"] for layer in configure["info"]["layers"]["published"]]
    assert set(made) <= {"storage pool"}  # none when the layers were in LXD already
    members = subprocess.run(
        ["tar", "--zstd", "-tf", build.artifacts_dir / "rootfs.tar.zst"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "./run/" in members and not [m for m in members if "edibuild-pyc" in m]


def test_second_run_runs_nothing(build: Build) -> None:
    assert build.ran(f"image:{NAME}") == []
    assert "nothing would run" in build.doit(f"why:{NAME}")


def test_bmap_copy_reproduces_the_image(build: Build, tmp_path: Path) -> None:
    target = tmp_path / "sdcard.img"
    subprocess.run(
        [
            "bmaptool",
            "copy",
            "--bmap",
            build.artifacts_dir / f"{NAME}.bmap",
            build.artifacts_dir / f"{NAME}.img",
            target,
        ],
        check=True,
        capture_output=True,
    )
    image = (build.artifacts_dir / f"{NAME}.img").read_bytes()
    assert target.read_bytes() == image


def test_layout_edit_reruns_only_the_image_stages(build: Build) -> None:
    build.edit("common/qemu-vm.yml", "size: 64MiB}", "size: 96MiB}")
    why = build.doit(f"why:{NAME}")
    assert "configuration: layout.partitions[data].size changed from 67108864 to 100663296" in why
    assert all(f"{stage}:{NAME} would run" in why for stage in IMAGE_STAGES)
    assert "export:" not in why and "configure:" not in why
    assert sorted(build.ran(*OUTPUTS)) == sorted(UNBOOTED)


def test_clean_image_rebuilds_only_the_image_outputs(build: Build) -> None:
    build.doit("clean", "--forget", f"image:{NAME}")
    assert not (build.artifacts_dir / f"{NAME}.img").exists()
    assert (build.artifacts_dir / "rootfs.tar.zst").exists()
    assert sorted(build.ran(*OUTPUTS)) == sorted(UNBOOTED)


def test_comment_edit_of_a_playbook_runs_nothing(build: Build) -> None:
    """The key follows what a playbook says: a comment changes nothing."""
    build.edit("plugins/playbooks/cleanup/main.yml", "\n", "\n# edited by the pipeline test\n")
    assert build.ran(*OUTPUTS) == []


def test_playbook_edit_reruns_configure_and_what_its_output_changes(build: Build) -> None:
    build.edit("plugins/playbooks/cleanup/main.yml", "- name: Clean up\n", "- name: Tidy up\n")
    ran = build.ran(*OUTPUTS)
    assert ran[:2] == ["configure", "export"]
    assert "bootstrap" not in ran and "import" not in ran
    # Early cut-off: when export makes the same bytes again, no image stage runs.
    manifest = json.loads((build.artifacts_dir / "export.manifest.json").read_text())
    assert manifest["why"] == [
        "the output of the configure stage changed since this stage last ran"
    ]
    if ran == ["configure", "export"]:
        print("early cut-off: export produced identical bytes; no image stage ran")
    else:
        assert sorted(ran) == sorted(["configure", "export", *UNBOOTED])


def test_dev_container_runs_the_configured_rootfs_and_is_cleaned(build: Build) -> None:
    build.doit(f"container:{NAME}")
    record = json.loads((build.artifacts_dir / "dev-container.json").read_text())
    name = record["name"]
    try:
        hostname = subprocess.run(
            ["lxc", "exec", name, "--", "cat", "/etc/hostname"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert hostname == name  # the dev container calls itself by its own name
        assert build.ran(f"container:{NAME}") == []
        assert "container:" not in build.doit(f"why:{NAME}")
    finally:
        build.doit("clean", "--forget", f"container:{NAME}")
    listing = subprocess.run(
        ["lxc", "list", "--format", "csv", "-c", "n"], capture_output=True, text=True, check=True
    ).stdout
    assert name not in listing.split()
