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


# The full tier: marker -> the variable that lets its tests run (they take far longer
# than CI's budget allows).
FULL_TIERS = {
    "full_pi": "EDIBUILD_FULL_PI",  # the Raspberry Pi build, about 25 minutes under emulation
    "full_update": "EDIBUILD_FULL_UPDATE",  # the Mender update test in qemu, see test_update.py
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the full tier's tests unless their variable is 1 (EDIBUILD_FULL_PI=1 for
    the Raspberry Pi build, EDIBUILD_FULL_UPDATE=1 for the update test): they are
    reported as deselected, never as passed or skipped."""
    off = [m for m, variable in FULL_TIERS.items() if os.environ.get(variable) != "1"]
    left_out = [item for item in items if any(item.get_closest_marker(m) for m in off)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
