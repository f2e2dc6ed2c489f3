"""Integration-test fixtures; `shared_cache` (tests/conftest.py) is one artifact cache for
every test of a session (the fault harness's too).

Stages are content addressed, so a bootstrap or a configured rootfs built by one test is
found by the next one with the same inputs (as a developer's builds find CI's).
"""

from __future__ import annotations

from pathlib import Path

import pytest


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
