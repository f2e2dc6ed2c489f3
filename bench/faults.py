"""The fault matrix: every stage under every fault that applies; prints a table and writes
bench/faults.md (runs, passes, and the three counts that must be zero per stage and fault).

Each run of a cell works in a checkout of its own (projects, artifacts and doit state of
its own) on one cache shared by the session (bench/faults-out/cache, kept between runs;
a fault that targets the cache gets a cache of its own), after a reference build that
never failed: every recovery must equal it. The faults, their random moments and choices
come from `--seed` (printed; `--seed S --only STAGE/FAULT` replays one run). See
tests/faults/cells.py for what is checked, and README.md for the promise it measures.

    python bench/faults.py                      # the whole matrix, once per cell
    python bench/faults.py --runs 2 --stage configure --fault SIGKILL
    python bench/faults.py --sample 600         # a random sample worth about 10 minutes
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.faults import cells, ledger, matrix  # noqa: E402
from tests.faults.checkout import STAGES  # noqa: E402

OUT = REPO / "bench" / "faults-out"
RESULTS = REPO / "bench" / "faults.md"
LEDGER = REPO / "bench" / "faults-ledger.jsonl"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="the seed of every random choice (printed)")
    parser.add_argument("--runs", type=int, default=1, help="runs per cell (default 1)")
    parser.add_argument("--stage", action="append", choices=STAGES, help="only these stages")
    parser.add_argument("--fault", action="append", choices=matrix.FAULTS, help="only these")
    parser.add_argument(
        "--only", action="append", help="a cell: STAGE/FAULT (repeat for more; --seed replays)"
    )
    parser.add_argument("--sample", type=float, help="a random sample worth about N seconds")
    parser.add_argument("--cache", type=Path, default=OUT / "cache", help="the shared cache")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file")
    parser.add_argument("--ledger", type=Path, default=LEDGER, help="the record of runs")
    parser.add_argument("--no-record", action="store_true", help="do not write the results")
    return parser.parse_args(argv)


def chosen(args: argparse.Namespace, durations: dict[str, float]) -> list[matrix.Cell]:
    if args.only:
        return [matrix.Cell(*only.split("/", 1)) for only in args.only]
    every = matrix.cells(args.stage or STAGES, args.fault or matrix.FAULTS)
    if args.sample:
        return matrix.sample(every, args.seed, args.sample, durations, len(every))
    return every


def _coverage(outcomes: list[matrix.Outcome]) -> str:
    """How much of the matrix these runs cover (a subset is said to be one)."""
    every = matrix.cells()
    ran = {o.cell for o in outcomes}
    if ran >= set(every):
        return f"The whole matrix: all {len(every)} cells."
    return (
        f"A subset of the matrix: {len(ran)} of its {len(every)} cells (the rows below); "
        "`python bench/faults.py` runs them all."
    )


def commit() -> str:
    """The checkout's commit, marked when edibuild's code differs from it."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                            "edibuild", "stages", "dodo.py", "tests/faults"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return f"{head or 'unknown'}{' with local changes' if dirty else ''}"


def _session_line(s: ledger.Session) -> str:
    return f"- {s.date}: `{s.command}` at commit {s.commit} on {s.machine}, {s.minutes:.0f} min"


def write(path: Path, sessions: list[ledger.Session], outcomes: list[matrix.Outcome]) -> None:
    """Render the results file from the latest runs of each cell."""
    failures = [o for o in outcomes if not o.passed]
    minutes = sum(s.minutes for s in sessions)
    lines = [
        "# edibuild fault matrix",
        "",
        f"**{matrix.totals(outcomes)}.** Wall time {minutes:.0f} min.",
        "",
        _coverage(outcomes),
        "",
        "Measured in these sessions (each row shows the latest session that ran its cell;",
        "every run is in `bench/faults-ledger.jsonl`):",
        "",
        *[_session_line(s) for s in sessions],
        "",
        "A run *landed* when the fault struck while the stage was building (a signal that",
        "came after the stage had finished, or a disk that did not fill, is still a run: what",
        "must hold after it was checked too). *Stale accepted*: an output, cache entry or",
        "pointer taken as finished that was not (or outputs that differ from the reference",
        "build's). *Leaks*: anything left behind (LXD objects, mounts, loop devices, scratch,",
        "temporary files, processes, held locks, touched decoys). *Failed recoveries*: the",
        "next plain build did not complete. *Unclear messages*: a traceback, or no message",
        "naming the fault and the stage's log.",
        "",
        matrix.table(outcomes),
        "",
        "## The faults",
        "",
        *[f"- **{name}**: {what}" for name, what in matrix.WHAT.items()],
        "",
    ]
    if failures:
        lines += ["## Runs that did not pass", ""]
        for outcome in failures:
            lines += [f"### {outcome.cell.stage} / {outcome.cell.fault} (seed {outcome.seed})", ""]
            lines += ["```", outcome.problems(), "```", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    print(f"faults: seed {args.seed} (python bench/faults.py --seed {args.seed} replays it)")
    started = time.monotonic()
    tmp = OUT / "runs"
    tmp.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    command = (
        f"python bench/faults.py --seed {args.seed}"
        f"{f' --runs {args.runs}' if args.runs != 1 else ''}"
        f"{''.join(f' --stage {stage}' for stage in args.stage or ())}"
        f"{''.join(f' --fault {shlex.quote(fault)}' for fault in args.fault or ())}"
        f"{''.join(f' --only {shlex.quote(only)}' for only in args.only or ())}"
        f"{f' --sample {args.sample:g}' if args.sample else ''}"
    )
    date, code, machine = matrix.now(), commit(), matrix.machine()

    def running() -> ledger.Session:
        return ledger.Session(date, command, code, machine, (time.monotonic() - started) / 60)

    outcomes: list[matrix.Outcome] = []
    session = tmp / f"session-{os.getpid()}"
    with cells.session(session, args.cache, args.cache.parent / "projects") as ctx:
        todo = chosen(args, ctx.reference.seconds)
        print(f"faults: {len(todo)} cells, {args.runs} run(s) each")
        for cell in todo:
            for index in range(args.runs):
                seed = matrix.run_seed(args.seed, cell, index)
                outcome = cells.run_cell(ctx, cell, seed)
                outcomes.append(outcome)
                verdict = "pass" if outcome.passed else "FAIL"
                print(f"faults: {verdict} {cell.stage} / {cell.fault} (seed {seed}, "
                      f"{outcome.seconds:.0f} s, landed {outcome.landed}) "
                      f"{'; '.join(outcome.notes)}", flush=True)  # fmt: skip
                if not outcome.passed:
                    print(outcome.problems(), flush=True)
                # Each run as it ends, in the ledger's form: an interrupted session's runs
                # can still be added to the ledger (append these lines to it).
                ledger.append(OUT / "outcomes.jsonl", running(), [outcome])
    print(matrix.table(outcomes))
    print(matrix.totals(outcomes))
    if not args.no_record:
        ledger.append(args.ledger, running(), outcomes)
        write(args.results, *ledger.latest(args.ledger))
        print(f"faults: wrote {args.results} and {args.ledger}")
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
