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


@pytest.fixture(scope="session")
def bookworm_rootfs(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """The bootstrap of the shipped amd64 project, through doit and the shared cache.

    test_bootstrap builds the same bootstrap first, so this is usually a cache hit.
    """
    from tests.conftest import require_root, require_tool
    from tests.workspace import DoitWorkspace

    require_root()
    require_tool("mmdebstrap", "zstd")
    projects = Path(__file__).resolve().parent / "projects"
    ws = DoitWorkspace(tmp_path_factory.mktemp("rootfs"), projects, shared_cache)
    ws.doit("bootstrap:it-bookworm-amd64")
    return ws.artifacts("it-bookworm-amd64") / "bootstrap.tar.zst"
