"""Killing a build at the worst moment (container up, playbook running) leaves nothing stale.

SIGTERM is turned into Ctrl-C, so the build removes its container itself. SIGKILL leaves
the container behind: the next run of the stage removes it and succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool
from tests.workspace import REPO, DoitWorkspace

pytestmark = pytest.mark.integration

PROJECT = "it-slow-amd64"
PREFIX = f"edibuild-{PROJECT}-configure-"


def containers() -> list[str]:
    out = subprocess.run(
        ["lxc", "list", "--format", "csv", "-c", "n"], capture_output=True, text=True, check=True
    ).stdout
    return [n for n in out.split() if n.startswith(PREFIX)]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Iterator[DoitWorkspace]:
    require_root()
    require_tool("lxc", "mmdebstrap")
    tmp = tmp_path_factory.mktemp("interrupt")
    workspace = DoitWorkspace(tmp, Path(__file__).parent / "projects", shared_cache)
    yield workspace
    # The imported image (and any container) would outlive the test otherwise.
    workspace.run("clean", "--forget", f"configure:{PROJECT}", f"import:{PROJECT}")
    assert containers() == []


def start(ws: DoitWorkspace) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "doit", f"configure:{PROJECT}"],
        cwd=REPO,
        env=ws.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_playbook(proc: subprocess.Popen[str]) -> str:
    """Read the build's output until the slow task runs (the container is up then)."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if "Wait a while" in line:
            time.sleep(3)
            return seen
    proc.kill()
    raise AssertionError(f"the slow playbook never started:\n{seen}")


def test_sigterm_removes_the_container(ws: DoitWorkspace) -> None:
    proc = start(ws)
    wait_for_playbook(proc)
    assert containers(), "the configure container should be up"
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert "Traceback" not in out
    assert containers() == []
    assert not (ws.artifacts(PROJECT) / ".state" / "configure.json").exists()


def test_sigkill_leftovers_are_removed_by_the_next_run(ws: DoitWorkspace) -> None:
    proc = start(ws)
    wait_for_playbook(proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    left = containers()
    assert left, "SIGKILL gives the build no chance to clean up"
    out = ws.doit(f"configure:{PROJECT}", timeout=900)
    assert "left by an earlier run" in out
    assert containers() == []
