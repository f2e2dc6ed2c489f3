"""What a newcomer types, on a machine that has nothing but the system directories on PATH.

CI once passed only because this machine had an `ansible-playbook` on its PATH from earlier
work: ./edibuild.sh must find the tools of its own virtualenv whatever the caller's PATH.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require_root, require_tool

pytestmark = pytest.mark.integration
MINIMAL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BOOTSTRAP = (REPO / "tests/integration/projects/it-bookworm-amd64.yml").read_text()


def test_edibuild_sh_configures_with_a_minimal_environment(
    tmp_path: Path, shared_cache: Path, bookworm_rootfs: Path
) -> None:
    """A real configure (ansible-playbook from .venv/bin) through ./edibuild.sh with `env -i`."""
    require_root()
    require_tool("lxc", "zstd")
    token = secrets.token_hex(8)  # a new playbook: configure really runs, no cache hit
    projects = tmp_path / "projects"
    (projects / "playbooks").mkdir(parents=True)
    (projects / "playbooks" / "marker.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - copy: {{dest: /etc/edibuild-newcomer, content: '{token}'}}\n"
    )
    (projects / "it-newcomer-amd64.yml").write_text(
        BOOTSTRAP.replace("Integration test bootstrap", "Newcomer test")
        + "playbooks:\n  100_marker:\n    path: playbooks/marker.yml\n"
    )
    env = {
        "PATH": MINIMAL_PATH,
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": "dumb",
        "EDIBUILD_PROJECTS": str(projects),
        "EDIBUILD_ARTIFACTS": str(tmp_path / "artifacts"),
        "EDIBUILD_STATE": str(tmp_path / "state"),
        "EDIBUILD_CACHE": str(shared_cache),
    }
    proc = subprocess.run(
        [REPO / "edibuild.sh", "configure:it-newcomer-amd64"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "configure:it-newcomer-amd64: building" in out  # ran, not reused
    manifest = (tmp_path / "artifacts/it-newcomer-amd64/configure.manifest.json").read_text()
    assert '"100_marker"' in manifest
    listing = subprocess.run(
        ["tar", "--zstd", "-xOf", tmp_path / "artifacts/it-newcomer-amd64/configured.tar.zst",
         "rootfs/etc/edibuild-newcomer"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert listing.stdout.decode() == token
