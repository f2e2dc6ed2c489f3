"""Lazy imports are safe when several threads use the module at once (doit -n 2)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from edibuild.lazy import lazy_import


def test_threads_see_a_whole_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "slowmod.py").write_text("import time\ntime.sleep(0.3)\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("slowmod", None)
    module = lazy_import("slowmod")
    assert "slowmod" not in sys.modules  # nothing imported yet
    seen: list[object] = []

    def use() -> None:
        seen.append(module.VALUE)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [42, 42, 42, 42]
    sys.modules.pop("slowmod", None)
