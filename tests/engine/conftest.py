"""Fixtures of the engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edibuild import doit_ext
from tests.engine.harness import BUILDS, INTERRUPT, Harness


@pytest.fixture
def h(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Harness]:
    doit_ext.install()
    BUILDS.clear()
    INTERRUPT.clear()
    yield Harness(tmp_path, {}, capsys)
