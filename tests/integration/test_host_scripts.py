"""Integration tests: the setup entry points (./edibuild.sh, python -m edibuild.host) for real."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from edibuild.host import commands, packages
from tests.conftest import REPO, require_tool

pytestmark = pytest.mark.integration


def test_every_debian_package_is_installed() -> None:
    require_tool("dpkg-query")
    assert packages.missing_packages() == []
    assert packages.missing_packages(["dpkg", "edibuild-no-such-package"]) == [
        "edibuild-no-such-package"
    ]


def test_edibuild_script_runs_doit_from_anywhere_and_fast() -> None:
    if not packages.setup_is_current(REPO):
        pytest.skip("setup is not current: ./edibuild.sh would run the whole setup first")
    start = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "edibuild.sh"), "--version"],
        cwd="/",
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("0.37.0")
    assert str(REPO / ".venv") in proc.stdout  # the virtualenv's doit, not a global one
    assert elapsed < 3.0, f"second run took {elapsed:.2f} s"


def test_host_report_lists_every_tool() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edibuild.host", "report"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    total = len(commands.HOST_COMMANDS)
    assert f"host tools: {total} of {total} present" in proc.stderr, proc.stderr


def test_scripts_are_valid_bash() -> None:
    for script in ("edibuild.sh", "run-tests", ".ci/run", "setup/bootstrap.bash"):
        subprocess.run(["bash", "-n", str(REPO / script)], check=True)
