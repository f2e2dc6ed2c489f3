"""The cache keeps to its budget by itself: every build trims when the cache is over it."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.engine.harness import BUILDS, Harness


def entries(h: Harness) -> list[Path]:
    return sorted((h.tmp / "cache" / "keys").glob("*/*.json"))


def age_cache(h: Harness, seconds: float) -> None:
    """Pretend every cache entry was last used `seconds` ago (blobs keep their mtime:
    the cache trusts a blob by it)."""
    then = time.time() - seconds
    for path in entries(h):
        os.utime(path, (then, then))


def test_a_build_over_the_budget_trims_old_entries_and_keeps_what_is_installed(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.doit("image:proj")
    assert len(entries(h)) == 3
    age_cache(h, 3600)
    monkeypatch.setenv("EDIBUILD_CACHE_BUDGET", "1")
    h.values["proj"] = "bye"
    code, out = h.doit("image:proj")
    assert code == 0, out
    assert "over its budget 1" in out
    assert len(entries(h)) == 3  # the hello entries went, the installed bye ones stay
    assert h.art("proj.img").read_text().startswith("image of BYE")
    code, out = h.doit("image:proj")
    assert "-- gamma:proj" in out  # intact and up to date
    h.values["proj"] = "hello"
    h.doit("image:proj")  # trimmed: really built again
    assert Counter(alpha=3, beta=3, gamma=3) == BUILDS


def test_within_the_budget_nothing_goes(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDIBUILD_CACHE_BUDGET", raising=False)  # the default, 20GiB
    h.doit("image:proj")
    age_cache(h, 3600)
    h.values["proj"] = "bye"
    code, out = h.doit("image:proj")
    assert code == 0, out
    assert "over its budget" not in out
    assert len(entries(h)) == 6


@pytest.mark.parametrize("setting", ["off", "not a size"])
def test_the_automatic_trim_can_be_turned_off(
    h: Harness, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    h.doit("image:proj")
    age_cache(h, 3600)
    monkeypatch.setenv("EDIBUILD_CACHE_BUDGET", setting)
    h.values["proj"] = "bye"
    code, out = h.doit("image:proj")
    assert code == 0, out
    assert len(entries(h)) == 6


def test_entries_used_lately_stay_even_over_the_budget(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another build may be installing an entry it just found: recent ones are kept."""
    h.doit("image:proj")
    monkeypatch.setenv("EDIBUILD_CACHE_BUDGET", "1")
    h.values["proj"] = "bye"
    code, out = h.doit("image:proj")
    assert code == 0, out
    assert len(entries(h)) == 6
    assert "the rest is in use or used lately" in out


def test_a_reused_entry_does_not_trim(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Restoring from the cache adds nothing to it: no listing, no trim."""
    h.doit("image:proj")
    h.values["proj"] = "bye"
    h.doit("image:proj")
    age_cache(h, 3600)
    monkeypatch.setenv("EDIBUILD_CACHE_BUDGET", "1")
    h.values["proj"] = "hello"
    code, out = h.doit("image:proj")  # every stage reused from the cache
    assert code == 0, out
    assert "over its budget" not in out
    assert Counter(alpha=2, beta=2, gamma=2) == BUILDS
