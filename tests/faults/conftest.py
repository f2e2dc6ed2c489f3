"""The fault harness in the test suite: a random sample of the matrix, a new one each run.

Two samples are drawn from one seed (printed in the header of the test run;
`EDIBUILD_FAULT_SEED=S` replays both: the same cells, moments and choices):
- the light sample runs in every `./run-tests` (CI): cells whose guessed cost is at most
  LIGHT seconds (no configure, no stopped LXD, no cut mirror), at most
  `EDIBUILD_FAULT_CELLS` of them (default 3) within `EDIBUILD_FAULT_BUDGET` seconds
  (default 150): with the reference build, about five minutes;
- the heavy sample (marked `faults_heavy`) only with `EDIBUILD_FAULT_HEAVY=1`: cells
  above LIGHT, at most `EDIBUILD_FAULT_HEAVY_CELLS` (default 3) within
  `EDIBUILD_FAULT_HEAVY_BUDGET` seconds (default 900).
`python bench/faults.py` runs the whole matrix.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.faults import cells, matrix

SEED = int(os.environ.get("EDIBUILD_FAULT_SEED") or random.SystemRandom().randrange(1 << 31))
LIGHT = 120.0  # seconds: the most a cell of the default run is guessed to cost
_SECONDS = dict(cells.DEFAULT_SECONDS)
_LIGHT = [c for c in matrix.cells() if matrix.cost(c, _SECONDS) <= LIGHT]
_HEAVY = [c for c in matrix.cells() if c not in _LIGHT]
SAMPLE = matrix.sample(
    _LIGHT,
    SEED,
    float(os.environ.get("EDIBUILD_FAULT_BUDGET", "150")),
    _SECONDS,
    int(os.environ.get("EDIBUILD_FAULT_CELLS", "3")),
)
HEAVY = matrix.sample(
    _HEAVY,
    SEED,
    float(os.environ.get("EDIBUILD_FAULT_HEAVY_BUDGET", "900")),
    _SECONDS,
    int(os.environ.get("EDIBUILD_FAULT_HEAVY_CELLS", "3")),
)


def pytest_report_header(config: pytest.Config) -> str:
    """Say which sample runs, and how to run it again."""
    light = ", ".join(f"{c.stage}/{c.fault}" for c in SAMPLE)
    heavy = ", ".join(f"{c.stage}/{c.fault}" for c in HEAVY)
    return (
        f"fault harness: seed {SEED} (EDIBUILD_FAULT_SEED={SEED} replays it): {light}; "
        f"with EDIBUILD_FAULT_HEAVY=1 also {heavy}"
    )
