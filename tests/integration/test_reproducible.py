"""Early cut-off through the real doit: two configure runs export the same bytes.

A small project on the shared bootstrap: a playbook that leaves the per-build state real
images get (a user made with useradd, ldconfig's aux-cache, the container's journal, a
file written from SOURCE_DATE_EPOCH), then the shipped cleanup playbook, then a user
stage reading export's rootfs. A comment-only edit of the first playbook runs nothing
(the key follows what it says); renaming its play runs configure again from scratch (no
layers), and export must make the same bytes, so the user stage after it must not run.
About 3 minutes once the shared cache holds the bootstrap.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool
from tests.workspace import REPO, DoitWorkspace

pytestmark = pytest.mark.integration

NAME = "it-repro-amd64"
EPOCH = 1700000000
PROJECT = f"""\
# Same bootstrap section as it-bookworm-amd64 (shared cache: bootstrapped once).
description: Reproducible export test
bootstrap:
  architecture: amd64
  suite: bookworm
  mirror: http://deb.debian.org/debian
  components: [main]
  variant: minbase
  tool: mmdebstrap
  packages: [python3, systemd-sysv]
lxd:
  layers: false
export:
  source_date_epoch: {EPOCH}
playbooks:
  100_state:
    path: plugins/playbooks/state/main.yml
  900_cleanup:
    path: plugins/playbooks/cleanup/main.yml
postprocessing:
  100_digest:
    command: [sh, -c, "sha256sum {{input:export.rootfs}} > {{output:digest}}"]
    inputs: [export.rootfs]
    outputs: {{digest: rootfs.sha256}}
"""
STATE_PLAYBOOK = """\
---
# Per-build state as real playbooks leave it.
- name: State
  hosts: all
  gather_facts: false
  tasks:
    - name: A user (useradd writes the password change date into /etc/shadow)
      ansible.builtin.user: {name: repro, shell: /bin/bash}
    - name: The library cache (ldconfig writes inode numbers into its aux-cache)
      ansible.builtin.command: ldconfig
      changed_when: true
    - name: Something in the journal of the build container
      ansible.builtin.shell: >-
        mkdir -p /var/log/journal && systemd-cat echo repro &&
        journalctl --flush
      changed_when: true
    - name: A file from SOURCE_DATE_EPOCH (set by edibuild for every command)
      ansible.builtin.shell: 'echo "$SOURCE_DATE_EPOCH" > /etc/edibuild-epoch'
      changed_when: true
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> DoitWorkspace:
    """A workspace holding only the test project, with the session's shared cache."""
    require_root()
    require_tool("mmdebstrap", "lxc", "zstd", "tar")
    source = tmp_path_factory.mktemp("repro-src")
    playbooks = source / "plugins" / "playbooks"
    (playbooks / "state").mkdir(parents=True)
    (playbooks / "state" / "main.yml").write_text(STATE_PLAYBOOK)
    shutil.copytree(REPO / "projects" / "plugins" / "playbooks" / "cleanup", playbooks / "cleanup")
    (source / f"{NAME}.yml").write_text(PROJECT)
    return DoitWorkspace(tmp_path_factory.mktemp("repro"), source, shared_cache)


def _member(archive: Path, name: str) -> str:
    """The text of one member of a .tar.zst."""
    tar = subprocess.run(
        ["tar", "--zstd", "-xOf", archive, f"./{name}"], capture_output=True, check=True
    )
    return tar.stdout.decode()


def _names(archive: Path, prefix: str) -> set[str]:
    """The member names of a .tar.zst below `prefix`, without it and without a final /."""
    listing = subprocess.run(
        ["tar", "--zstd", "-tf", archive], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return {n.removeprefix(prefix).rstrip("/") for n in listing if n.startswith(prefix)}


def _state(work: DoitWorkspace, stage: str) -> dict[str, object]:
    data = json.loads((work.artifacts(NAME) / ".state" / f"{stage}.json").read_text())
    assert isinstance(data, dict)
    return data


def test_first_build_leaves_no_per_build_state(work: DoitWorkspace) -> None:
    """The export carries the epoch, the date-free shadow entry, and no journal/aux-cache."""
    assert work.ran(f"digest:{NAME}") == ["bootstrap", "import", "configure", "export", "digest"]
    rootfs = work.artifacts(NAME) / "rootfs.tar.zst"
    assert _member(rootfs, "etc/edibuild-epoch").strip() == str(EPOCH)
    shadow = dict(line.split(":", 1) for line in _member(rootfs, "etc/shadow").splitlines())
    assert shadow["repro"].split(":")[1] == str(EPOCH // 86400)
    # The configured container had the state; the export has not.
    configured = _names(work.artifacts(NAME) / "configured.tar.zst", "rootfs/")
    names = _names(rootfs, "./")
    assert "var/cache/ldconfig/aux-cache" in configured
    assert "var/cache/ldconfig/aux-cache" not in names
    assert "etc/ld.so.cache" in names
    assert [n for n in configured if n.startswith("var/log/journal/")] != []
    assert [n for n in names if n.startswith("var/log/journal/")] == []
    assert "var/log/journal" in names


def test_comment_edit_runs_nothing(work: DoitWorkspace) -> None:
    """The key follows what a playbook says: a comment or layout edit runs no stage."""
    work.edit("plugins/playbooks/state/main.yml", "---\n", "---\n# a comment only\n\n")
    assert "nothing would run" in work.doit(f"why:{NAME}")
    assert work.ran(f"digest:{NAME}") == []


def test_renamed_play_reruns_configure_and_export_only(work: DoitWorkspace) -> None:
    """A second configure from scratch exports the same bytes: the user stage stays."""
    before = _state(work, "export")
    work.edit("plugins/playbooks/state/main.yml", "- name: State\n", "- name: The state\n")
    assert "state/main.yml changed" in work.doit(f"why:{NAME}")
    assert work.ran(f"digest:{NAME}") == ["configure", "export"]
    assert _state(work, "export") == before
