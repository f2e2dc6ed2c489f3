"""Shared test helpers: tool requirements that skip locally but fail in CI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip when `what` is unavailable on a developer machine; fail in CI (CI=true)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"{what} is not available")


def require_tool(*commands: str) -> None:
    """Require host commands (see `require`)."""
    for command in commands:
        require(shutil.which(command) is not None, f"the command {command!r}")


def require_root() -> None:
    """Require running as root (see `require`)."""
    require(os.geteuid() == 0, "root privileges")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for every integration test of a session (stages are content
    addressed): EDIBUILD_TEST_CACHE if set (keep it between runs), else a fresh folder."""
    given = os.environ.get("EDIBUILD_TEST_CACHE")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("cache")


# Markers of tests left out unless their variable is 1 (reported as deselected, never as
# passed or skipped): the full tier, which takes far longer than CI's budget allows.
OPT_IN = {
    "full_pi": "EDIBUILD_FULL_PI",  # the Raspberry Pi build, about 25 minutes under emulation
    "full_update": "EDIBUILD_FULL_UPDATE",  # the Mender update test in qemu, see test_update.py
    "faults_heavy": "EDIBUILD_FAULT_HEAVY",  # fault cells of minutes each (LXD stopped, ...)
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the fault harness's sample last (it finds the others' builds in the shared
    cache); leave out the opt-in tests (OPT_IN) whose variable is not 1."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)  # stable
    off = [m for m, variable in OPT_IN.items() if os.environ.get(variable) != "1"]
    left_out = [item for item in items if any(item.get_closest_marker(m) for m in off)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
