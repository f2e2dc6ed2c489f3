"""Benchmark edibuild's builds and rebuilds: prints a table and writes bench/results.md.

Each scenario runs the real `doit` in a private copy of the projects, artifacts and cache
(bench/out/), so the user's own builds are untouched. For each it records wall time, the
load average when it started, the peak memory of the largest process, and where the time
went: the stages that ran, with the seconds and phases their manifests record. Beside
each row stands its target (issue 15) and whether this run met it.

The projects are copied under names of their own (`PREFIX-...`, `--prefix`, `bench` by
default), so their LXD layers are the bench's alone; a cold run deletes them with the
cache. MANY more copies of the VM project are loaded in every run (never built), so
start-up, `doit list` and the no-op are measured with 50 projects besides. `--pi` adds
the Raspberry Pi 3 rows (arm64 built under qemu-user emulation). `--only 1,2,3` runs some
rows only (a cold workspace when row 1 or P1 is among them, else the workspace as it is).

The rows are in bench/scenarios.py, the measuring and the workspace in bench/measure.py
(sibling modules: run this file as a script, `python bench/bench.py`).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import measure
from measure import MANY, PI_SOURCE, REPEAT, REPO, SOURCE, Names, Result, Scenario
from scenarios import pi_scenarios, scenarios


def machine() -> str:
    """One line describing the machine the figures come from."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores = os.cpu_count()
    return f"{platform.node()}: {cores} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}"


def table(results: list[Result]) -> str:
    """The results as a Markdown table, with each row's target and whether it was met."""
    bare = next((r.seconds for r in results if r.name.startswith("version:")), None)
    lines = [
        "| row | wall time | target | met | load | peak memory | where the time went |",
        "|---|---:|---|---|---:|---:|---|",
    ]
    for r in results:
        where = "; ".join(r.where) or "no stage ran"
        status = "" if r.ok else " (FAILED)"
        target = r.target.text() if r.target else ""
        met = ("yes" if r.target.met(r, bare) else "**no**") if r.target else ""
        lines.append(
            f"| {r.name}{status} | {r.seconds:.2f} s | {target} | {met} | {r.load:.1f} | "
            f"{r.peak_mb:.0f} MB | {where} |"
        )
    return "\n".join(lines)


def select(todo: list[Scenario], only: str) -> list[Scenario]:
    """The scenarios `--only` names (comma-separated idents), in the bench's order."""
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = {s.ident: s for s in todo}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"bench: no row {', '.join(unknown)} (rows: {', '.join(known)})")
    return [s for s in todo if s.ident in wanted]


def main() -> int:
    """Run the scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="keep the bench cache (no cold build)")
    parser.add_argument("--pi", action="store_true", help="add the Raspberry Pi 3 rows")
    parser.add_argument("--only", default="", help="rows to run, e.g. version,list,1,2,3,4,4b")
    parser.add_argument("--prefix", default="bench", help="start of the bench projects' names")
    parser.add_argument(
        "--no-record", action="store_true", help="print the table, leave bench/results.md alone"
    )
    args = parser.parse_args()
    measure.NAMES = names = Names(args.prefix)
    todo = scenarios() + pi_scenarios()
    if args.only:
        todo = select(todo, args.only)
    elif not args.pi:
        todo = scenarios()
    cold = not args.warm and any(s.ident in ("1", "P1") for s in todo)
    measure.prepare(cold=cold)
    measure.measure("warm-up", ["--version"])  # compile and cache the modules once
    measure.measure("warm-up", ["list"])
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    results, details = measure.run_all(todo)
    text = table(results)
    stamp = datetime.now(UTC).strftime("%H:%M UTC")
    command = " ".join(["python bench/bench.py", *sys.argv[1:]])
    report = (
        f"# edibuild benchmark\n\nMeasured {started}-{stamp} with `{command}` on {machine()}. "
        f"The load column is the 1-minute load average when the row started (the machine "
        f"has {os.cpu_count()} cores: above that, other work shared it). Projects: "
        f"`{names.project}` is a copy of `{SOURCE}`, `{names.twin}` the same VM under another "
        f"name, `{names.pi}` a copy of `{PI_SOURCE}`; {MANY} more copies of `{SOURCE}` are "
        f"loaded in every run. Rows run {REPEAT} times show the median.\n\n{text}\n"
        + "".join(details)
    )
    if not args.no_record:
        (REPO / "bench" / "results.md").write_text(report)
    print()
    print(text)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
