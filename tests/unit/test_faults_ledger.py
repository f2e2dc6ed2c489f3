"""The fault matrix's ledger: a later session replaces the rows of the cells it ran again."""

from __future__ import annotations

from pathlib import Path

from tests.faults import ledger
from tests.faults.matrix import Cell, Outcome


def _session(date: str) -> ledger.Session:
    return ledger.Session(date, "python bench/faults.py", "abc1234", "vm", 1.0)


def test_a_later_session_replaces_the_cells_it_ran_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    kill, disk = Cell("disk", "SIGKILL"), Cell("disk", "full cache")
    ledger.append(path, _session("2026-01-01"), [Outcome(kill, 1), Outcome(disk, 2, leaks=["x"])])
    ledger.append(path, _session("2026-01-02"), [Outcome(disk, 3), Outcome(disk, 4)])
    sessions, outcomes = ledger.latest(path)
    assert [s.date for s in sessions] == ["2026-01-01", "2026-01-02"]
    assert sorted((o.cell.fault, o.seed, o.passed) for o in outcomes) == [
        ("SIGKILL", 1, True), ("full cache", 3, True), ("full cache", 4, True),
    ]  # fmt: skip


def test_no_ledger_means_no_runs(tmp_path: Path) -> None:
    assert ledger.latest(tmp_path / "missing.jsonl") == ([], [])


def test_runs_logged_as_they_end_make_one_session_with_its_longest_time(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    cell = Cell("bmap", "SIGINT")
    for minutes, seed in ((1.0, 1), (3.0, 2), (2.0, 3)):
        session = ledger.Session("2026-01-01", "python bench/faults.py", "abc", "vm", minutes)
        ledger.append(path, session, [Outcome(cell, seed)])
    sessions, outcomes = ledger.latest(path)
    assert [(s.date, s.minutes) for s in sessions] == [("2026-01-01", 3.0)]
    assert [o.seed for o in outcomes] == [1, 2, 3]
