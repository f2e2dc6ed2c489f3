"""Keep the artifact cache within its budget after every build, without `doit trim`.

The budget is EDIBUILD_CACHE_BUDGET (`off` turns the automatic pass off), else
DEFAULT_BUDGET. After a stage has built and installed its outputs, one listing of the
cache's blobs says whether it is over; only then does the trim of edibuild/store/trim.py
run: least recently used first, never what a project's installed artifacts point at,
and never an entry used in the last RECENT_SECONDS (a build running beside this one may
be installing it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from edibuild.errors import EdibuildError
from edibuild.run import say
from edibuild.store.cache import Cache

DEFAULT_BUDGET = "20GiB"
ENV = "EDIBUILD_CACHE_BUDGET"
OFF = ("off", "none", "no")
RECENT_SECONDS = 600


def budget_text(env: Mapping[str, str] | None = None) -> str:
    """The budget as the user wrote it (or the default)."""
    env = os.environ if env is None else env
    return env.get(ENV, "").strip() or DEFAULT_BUDGET


def keep_within(cache: Cache, artifacts_root: Path, env: Mapping[str, str] | None = None) -> None:
    """Trim the cache when it is over its budget; say what went (nothing when within)."""
    from edibuild.store.trim import cache_size, parse_budget, trim

    text = budget_text(env)
    if text.lower() in OFF:
        return
    try:
        budget = parse_budget(text)
    except EdibuildError as exc:
        say(f"cache: {exc} ({ENV}); not trimmed")
        return
    if cache_size(cache) <= budget:
        return
    report = trim(cache, artifacts_root, budget, min_age=RECENT_SECONDS)
    say(
        f"cache {cache.root}: over its budget {text}: removed {report.entries_removed} "
        f"entries and {report.blobs_removed} blobs ({(report.before - report.after) / 1e9:.2f}"
        f" GB), {report.after / 1e9:.2f} GB left"
        + ("" if report.after <= budget else " (the rest is in use or used lately)")
    )
