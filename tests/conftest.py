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
