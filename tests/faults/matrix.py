"""The fault matrix: which fault applies to which stage, a seeded sample of it, the results.

A cell is a (stage, fault) pair; a run of a cell injects the fault once (its random
choices drawn from the run's seed) and checks what must hold after it. `sample` picks
cells at random within a time budget (CI runs a different sample each time, replayable
with its seed); `table` writes the results people read (bench/faults.md).
"""

from __future__ import annotations

import platform
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.faults.checkout import STAGES, USER_STAGE

SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT")
PARALLEL = {"container": "export", "boottest": USER_STAGE}  # stage -> the one beside it
SPACE = ("full scratch", "full cache", "full artifacts")
WRITERS = ("bootstrap", "configure", "export", "partitions", "disk", "mender", USER_STAGE)

APPLIES: dict[str, tuple[str, ...]] = {
    **{signal: STAGES for signal in SIGNALS},
    "SIGTERM -n 2": tuple(PARALLEL),
    "SIGINT -n 2": tuple(PARALLEL),
    "full scratch": (*WRITERS, "boottest"),
    "full cache": WRITERS,
    "full artifacts": WRITERS,
    "LXD stopped": ("import", "configure", "container"),
    "mirror dropped": ("bootstrap", "configure"),
    "second doit": STAGES,
    "two checkouts": STAGES,
    "corrupted blob": STAGES,
}
FAULTS = tuple(APPLIES)
WHAT = {
    "SIGKILL": "kill -9 of doit at a random moment of the stage",
    "SIGTERM": "kill of doit at a random moment of the stage",
    "SIGINT": "Ctrl-C (SIGINT to doit's process group) at a random moment",
    "SIGTERM -n 2": "kill of `doit -n 2` while the stage and another run in parallel",
    "SIGINT -n 2": "Ctrl-C of `doit -n 2` while the stage and another run in parallel",
    "full scratch": "the scratch space (`<cache>/tmp`) on a small tmpfs that fills",
    "full cache": "the cache's blobs on a small tmpfs that fills",
    "full artifacts": "the artifact folder on a small tmpfs that fills",
    "LXD stopped": "the LXD daemon (a private one) stopped mid-stage, started again after",
    "mirror dropped": "the stage's mirror (and apt proxy) connections cut for a while",
    "second doit": "a second `doit` of the same project and stage at the same moment",
    "two checkouts": "two checkouts sharing one EDIBUILD_CACHE build the same inputs at once",
    "corrupted blob": "a byte of the stage's cache blob changed after it was stored",
}


@dataclass(frozen=True, order=True)
class Cell:
    """One stage and one fault."""

    stage: str
    fault: str

    @property
    def slug(self) -> str:
        """A name for folders and test ids."""
        return f"{self.stage}-{self.fault}".replace(" ", "-").replace("--", "-")


def cells(stages: Iterable[str] = STAGES, faults: Iterable[str] = FAULTS) -> list[Cell]:
    """Every cell of the matrix (restricted to `stages` and `faults`), in table order."""
    wanted = set(stages)
    return [Cell(s, f) for s in STAGES if s in wanted for f in faults if s in APPLIES[f]]


# Rough seconds of one run of a cell beyond the stage's own build time (for sampling).
OVERHEAD = {"LXD stopped": 150, "two checkouts": 40, "corrupted blob": 40, "mirror dropped": 60}


def cost(cell: Cell, durations: dict[str, float]) -> float:
    """A guess of a run's seconds: the stage built about twice, plus the fault's overhead."""
    build = durations.get(cell.stage, 30.0)
    if cell.stage == "configure" and cell.fault in ("LXD stopped", "mirror dropped"):
        build *= 2  # from scratch, without layers
    return 25 + 2.2 * build + OVERHEAD.get(cell.fault, 0)


def sample(
    all_cells: Sequence[Cell], seed: int, budget: float, durations: dict[str, float], most: int
) -> list[Cell]:
    """Random cells whose guessed cost fits the budget (at least one), from `seed`."""
    rng = random.Random(seed)
    order = list(all_cells)
    rng.shuffle(order)
    chosen: list[Cell] = []
    spent = 0.0
    for cell in order:
        if len(chosen) >= most:
            break
        price = cost(cell, durations)
        if not chosen or spent + price <= budget:
            chosen.append(cell)
            spent += price
    return chosen


def run_seed(seed: int, cell: Cell, index: int) -> int:
    """The seed of run `index` of a cell (what `--seed S` replays)."""
    return random.Random(f"{seed}/{cell.stage}/{cell.fault}/{index}").randrange(1 << 31)


@dataclass
class Outcome:
    """What one run of a cell found."""

    cell: Cell
    seed: int
    landed: bool = False
    stale: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when nothing stale was accepted, nothing leaked, recovery worked, messages
        were clear."""
        return not (self.stale or self.leaks or self.failed or self.messages)

    def problems(self) -> str:
        """Everything wrong, for a test failure or the report."""
        parts = []
        kinds = (("stale accepted", self.stale), ("leaks", self.leaks),
                 ("failed recovery", self.failed), ("messages", self.messages))  # fmt: skip
        for title, items in kinds:
            parts += [f"{title}: {item}" for item in items]
        return "\n".join(parts)


def machine() -> str:
    """The machine, in one line."""
    cpus = 0
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("processor"):
                cpus += 1
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
        mem = next(
            int(line.split()[1]) // (1024 * 1024)
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem = 0
    return f"{platform.node()}: {cpus} cores ({model}), {mem} GiB, Linux {platform.release()}"


def table(outcomes: Sequence[Outcome]) -> str:
    """The results as a markdown table: one row per cell that ran."""
    rows = ["| stage | fault | runs | passes | landed | stale accepted | leaks | failed "
            "recoveries | unclear messages | seconds |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    by_cell: dict[Cell, list[Outcome]] = {}
    for outcome in outcomes:
        by_cell.setdefault(outcome.cell, []).append(outcome)
    for cell in sorted(by_cell, key=lambda c: (STAGES.index(c.stage), FAULTS.index(c.fault))):
        runs = by_cell[cell]
        rows.append(
            f"| {cell.stage} | {cell.fault} | {len(runs)} | {sum(r.passed for r in runs)} | "
            f"{sum(r.landed for r in runs)} | {sum(len(r.stale) > 0 for r in runs)} | "
            f"{sum(len(r.leaks) > 0 for r in runs)} | {sum(len(r.failed) > 0 for r in runs)} | "
            f"{sum(len(r.messages) > 0 for r in runs)} | {sum(r.seconds for r in runs):.0f} |"
        )
    return "\n".join(rows)


def totals(outcomes: Sequence[Outcome]) -> str:
    """One line: runs, passes and the counts that must be zero."""
    return (
        f"{len(outcomes)} runs, {sum(o.passed for o in outcomes)} passed; "
        f"stale accepted {sum(len(o.stale) > 0 for o in outcomes)}, "
        f"leaks {sum(len(o.leaks) > 0 for o in outcomes)}, "
        f"failed recoveries {sum(len(o.failed) > 0 for o in outcomes)}, "
        f"unclear messages {sum(len(o.messages) > 0 for o in outcomes)}"
    )


def now() -> str:
    """The date and time, for the results file."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
