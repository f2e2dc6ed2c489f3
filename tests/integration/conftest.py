"""Integration-test fixtures: one artifact cache shared by every test of a session.

Stages are content addressed, so a bootstrap or a configured rootfs built by one test is
found by the next one with the same inputs (as a developer's builds find CI's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EDIBUILD_TEST_CACHE if set (keep it between runs), else a fresh session directory."""
    given = os.environ.get("EDIBUILD_TEST_CACHE")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("cache")
