"""The fault matrix's record of runs (bench/faults-ledger.jsonl): one JSON line per recorded
run, with the session (date, command, commit, machine) it belongs to.

The whole matrix takes hours on a small machine, so it may be recorded in parts; the
results file shows, for each cell, the runs of the latest session that ran it, and names
those sessions. A later session that runs a cell again replaces that cell's rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.faults.matrix import Cell, Outcome


@dataclass(frozen=True)
class Session:
    """One recorded invocation of bench/faults.py."""

    date: str
    command: str
    commit: str
    machine: str
    minutes: float = field(compare=False)


def append(path: Path, session: Session, outcomes: Iterable[Outcome]) -> None:
    """Add a session's runs to the ledger (one line each)."""
    with path.open("a") as ledger:
        for o in outcomes:
            ledger.write(json.dumps({
                "session": vars(session), "stage": o.cell.stage, "fault": o.cell.fault,
                "seed": o.seed, "landed": o.landed, "stale": o.stale, "leaks": o.leaks,
                "failed": o.failed, "messages": o.messages, "notes": o.notes,
                "seconds": round(o.seconds),
            }) + "\n")  # fmt: skip


def latest(path: Path) -> tuple[list[Session], list[Outcome]]:
    """Per cell, the runs of the latest session that ran it; and those sessions, oldest first."""
    by_cell: dict[Cell, tuple[Session, list[Outcome]]] = {}
    longest: dict[Session, float] = {}  # rows written as runs end carry the time so far
    if not path.exists():
        return [], []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        session = Session(**row["session"])
        longest[session] = max(longest.get(session, 0.0), session.minutes)
        cell = Cell(row["stage"], row["fault"])
        outcome = Outcome(
            cell, row["seed"], row["landed"], row["stale"], row["leaks"], row["failed"],
            row["messages"], row["notes"], float(row["seconds"]),
        )  # fmt: skip
        seen = by_cell.get(cell)
        if seen is None or seen[0] != session:
            by_cell[cell] = (session, [outcome])  # a later session replaces the cell's rows
        else:
            seen[1].append(outcome)
    shown = {session for session, _ in by_cell.values()}
    sessions = [replace(s, minutes=longest[s]) for s in shown]
    sessions.sort(key=lambda s: s.date)
    return sessions, [o for _, runs in by_cell.values() for o in runs]
