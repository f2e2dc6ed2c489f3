"""A random sample of the fault matrix (tests/faults/conftest.py picks it; its seed is in the
header): each cell injects its fault into a real build, then checks that the next plain
build completes and equals the reference build, that nothing stale was taken as
finished, that nothing was left behind, and that the fault got one clear message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool
from tests.faults import cells, matrix
from tests.faults.conftest import HEAVY, SAMPLE, SEED

pytestmark = [pytest.mark.integration, pytest.mark.faults]

TOOLS = ("mmdebstrap", "lxc", "lxd", "zstd", "mkfs.ext4", "sfdisk", "bmaptool",
         "mender-artifact", "qemu-system-x86_64", "ss", "losetup", "mount", "setsid")  # fmt: skip


@pytest.fixture(scope="module")
def context(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, shared_cache: Path
) -> Iterator[cells.Context]:
    require_root()
    require_tool(*TOOLS)
    tmp = tmp_path_factory.mktemp("faults")
    # The reference build builds only what the selected cells need (image:NAME and the
    # extra tasks of their stages): the boot test costs a minute the light sample rarely uses.
    selected = [getattr(item, "callspec", None) for item in request.session.items]
    stages = {s.params["cell"].stage for s in selected if s and "cell" in s.params}
    with cells.session(tmp / "runs", shared_cache, tmp / "projects", stages=stages) as ctx:
        yield ctx


CELLS = [pytest.param(c, id=c.slug) for c in SAMPLE]
CELLS += [pytest.param(c, id=c.slug, marks=pytest.mark.faults_heavy) for c in HEAVY]


@pytest.mark.parametrize("cell", CELLS)
def test_fault(context: cells.Context, cell: matrix.Cell) -> None:
    seed = matrix.run_seed(SEED, cell, 0)
    outcome = cells.run_cell(context, cell, seed)
    replay = f"EDIBUILD_FAULT_SEED={SEED}, or python bench/faults.py --seed {SEED} --only"
    assert outcome.passed, (
        f"{cell.stage} / {cell.fault} (run seed {seed}; replay: {replay} "
        f"'{cell.stage}/{cell.fault}'):\n{outcome.problems()}\nnotes: {'; '.join(outcome.notes)}"
    )
