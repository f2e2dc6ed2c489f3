"""Layered configure through the real `doit`, LXD and Ansible.

A project with three small playbooks (tests/fixtures/layers) is built up to its export;
then its third playbook is edited: configure must start from the cached state after the
second and run the third only. The result is compared with a full run of the edited
project from scratch in one fresh container (a copy with `lxd: {layers: false}`): the
same files (names, owners, modes, contents) and the same installed packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edibuild.lxd import client as lxd
from edibuild.lxd import layers
from edibuild.lxd.errors import BackendError
from tests.conftest import require, require_root, require_tool

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "layers"
LAYERED, PLAIN = "layers-a", "layers-b"
PLAYBOOKS = ["10_packages", "20_files", "30_final"]
# journald's directory is named after the container's random machine-id, and whether it
# exists at all depends on when the journal was flushed during boot: two runs differ
# there, layered or not (export empties it but keeps it). Not compared.
JOURNAL = re.compile(r"^\./var/log/journal/[0-9a-f]{32}")


class Build:
    """A private copy of the fixture project with its own artifacts and doit state."""

    def __init__(self, tmp: Path, cache: Path) -> None:
        self.projects = tmp / "projects"
        shutil.copytree(FIXTURE, self.projects)
        self.artifacts = tmp / "artifacts"
        self.env = dict(os.environ)
        self.env.update(
            EDIBUILD_PROJECTS=str(self.projects),
            EDIBUILD_STATE=str(tmp / "state"),
            EDIBUILD_ARTIFACTS=str(self.artifacts),
            EDIBUILD_CACHE=str(cache),
        )

    def doit(self, *args: str, check: bool = True, python: tuple[str, ...] = ()) -> str:
        """Run doit (Python given the `python` options); return its stdout and stderr."""
        proc = subprocess.run(
            [sys.executable, *python, "-m", "doit", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 or not check, out
        return out

    def info(self, project: str, stage: str) -> dict[str, Any]:
        """The info a stage recorded in its manifest."""
        manifest = json.loads((self.artifacts / project / f"{stage}.manifest.json").read_text())
        return dict(manifest["info"], seconds=manifest["seconds"], reused=manifest["reused"])

    def layer_aliases(self, client: Any, project: str) -> list[str]:
        """The LXD aliases of a project's layers (`edibuild-layer-<project>-<key16>`)."""
        pattern = re.compile(rf"^edibuild-layer-{project}-[0-9a-f]{{16}}$")
        names = (a for image in client.images() for a in image.aliases)
        return sorted(n for n in names if pattern.match(n))


@pytest.fixture(scope="module")
def client() -> Any:
    require_root()
    require_tool("mmdebstrap", "lxc", "zstd")
    try:
        return lxd.connect()
    except BackendError as exc:
        require(False, f"an LXD daemon ({exc})")


@pytest.fixture(scope="module")
def build(
    tmp_path_factory: pytest.TempPathFactory, shared_cache: Path, client: Any
) -> Iterator[Build]:
    made = Build(tmp_path_factory.mktemp("layers"), shared_cache)
    yield made
    for name in (LAYERED, PLAIN):
        if (made.projects / f"{name}.yml").exists():
            made.doit("clean", "--forget", f"configure:{name}", f"import:{name}", check=False)
    left = [a for n in (LAYERED, PLAIN) for a in made.layer_aliases(client, n)]
    assert left == [], f"layers left behind: {left}"


def rootfs_listing(path: Path) -> dict[str, tuple[Any, ...]]:
    """Every member of an exported rootfs: type, mode, owner, link target, content digest."""
    listing = {}
    with subprocess.Popen(["zstd", "-q", "-d", "-c", str(path)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if JOURNAL.match(member.name):
                    continue
                digest = ""
                if member.isfile():
                    data = tar.extractfile(member)
                    assert data is not None
                    digest = hashlib.sha256(data.read()).hexdigest()
                listing[member.name] = (
                    member.type, member.mode, member.uid, member.gid, member.linkname, digest,
                )  # fmt: skip
    return listing


def test_full_run_saves_the_layers_worth_saving(build: Build, client: Any) -> None:
    out = build.doit(f"configure:{LAYERED}")  # its export is made after the edit only
    info = build.info(LAYERED, "configure")
    assert [p["key"] for p in info["playbooks"]] == PLAYBOOKS
    assert info["layers"]["skipped"] == []
    # The state after the last but one always; after the first only if it took long.
    first = info["playbooks"][0]["seconds"]
    saved = PLAYBOOKS[:2] if first >= layers.WORTH_SECONDS else PLAYBOOKS[1:2]
    assert [m["after"] for m in info["layers"]["published"]] == saved
    assert "saving the state after 20_files as a layer" in out
    assert "saving the state after 30_final" not in out
    assert len(build.layer_aliases(client, LAYERED)) == len(saved)
    why = build.doit(f"why:{LAYERED}")  # says why, should the next run not be a no-op
    noop = build.doit(f"configure:{LAYERED}", python=("-X", "importtime"))
    assert f"-- configure:{LAYERED}" in noop and f"-- import:{LAYERED}" in noop, why
    assert "pylxd" not in noop  # the up-to-date checks asked LXD without the client library
    publish = [m["seconds"] for m in info["layers"]["published"]]
    print(f"full configure: {info['seconds']} s, publish per layer: {publish}")


def test_editing_the_third_playbook_runs_only_the_third(build: Build, client: Any) -> None:
    final = build.projects / "playbooks" / "final" / "main.yml"
    final.write_text(final.read_text().replace("marker v1", "marker v2"))
    why = build.doit(f"why:{LAYERED}")
    assert "configure:" in why and "final/main.yml" in why
    out = build.doit(f"export:{LAYERED}")
    assert "configure: playbook 30_final" in out
    assert "configure: playbook 10_packages" not in out
    assert "configure: playbook 20_files" not in out
    assert "from the cached state after 20_files" in out
    info = build.info(LAYERED, "configure")
    assert not info["reused"]
    assert [p["key"] for p in info["playbooks"]] == ["30_final"]
    assert info["layers"]["skipped"] == PLAYBOOKS[:2]
    assert info["layers"]["published"] == []
    assert len(build.layer_aliases(client, LAYERED)) in (1, 2)
    print(f"configure after editing the last playbook: {info['seconds']} s")


def test_layered_result_equals_a_full_run_from_scratch(build: Build, client: Any) -> None:
    text = (build.projects / f"{LAYERED}.yml").read_text()
    (build.projects / f"{PLAIN}.yml").write_text(f"{text}lxd: {{layers: false}}\n")
    out = build.doit(f"export:{PLAIN}")
    assert "configure: playbook 10_packages" in out and "saving the state" not in out
    plain = build.info(PLAIN, "configure")
    assert plain["layers"]["enabled"] is False and plain["layers"]["published"] == []
    assert build.layer_aliases(client, PLAIN) == []
    print(f"configure from scratch without layers: {plain['seconds']} s")
    layered_pkgs = build.info(LAYERED, "export")["packages"]
    assert any(p["name"] == "hello" for p in layered_pkgs)
    assert layered_pkgs == build.info(PLAIN, "export")["packages"]
    a = rootfs_listing(build.artifacts / LAYERED / "rootfs.tar.zst")
    b = rootfs_listing(build.artifacts / PLAIN / "rootfs.tar.zst")
    assert "./etc/edibuild-final" in a and "./etc/motd" in a
    assert sorted(set(a) ^ set(b)) == []
    differ = sorted(name for name in a if a[name] != b[name])
    assert differ == [], differ


def test_clean_forget_removes_the_layers(build: Build, client: Any) -> None:
    out = build.doit("clean", "--forget", f"configure:{LAYERED}")
    assert "removed LXD image edibuild-layer-" in out
    assert build.layer_aliases(client, LAYERED) == []
    assert build.layer_aliases(client, PLAIN) == []
