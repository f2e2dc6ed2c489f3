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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the full Raspberry Pi build (about 25 minutes under emulation) unless
    EDIBUILD_FULL_PI=1: it is reported as deselected, never as passed or skipped."""
    if os.environ.get("EDIBUILD_FULL_PI") == "1":
        return
    left_out = [item for item in items if item.get_closest_marker("full_pi")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("full_pi")]
