"""The bench's private workspace and its measurements: run one doit command, time it, say
where the time went.

Kept apart from bench/bench.py (the entry point and its table) and bench/scenarios.py (the
rows), so each stays readable: this is what every row shares. `NAMES` is the bench's one
piece of mutable state: bench.py sets `measure.NAMES` from `--prefix` before anything
runs, so the other modules read it as `measure.NAMES`, never by `from measure import`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
SOURCE, PI_SOURCE = "qemu-bookworm-amd64", "pi3-bookworm-arm64"
MANY = 50  # extra projects loaded in every run, never built
REPEAT = 3  # cheap rows run this often; the table shows the median
# doit's ".  TASK" lines; with -n 2 one may follow another process's line without a newline.
RAN = re.compile(r"(?:^|(?<=[^\s]))\.  ([\w.-]+:[\w.-]+)", re.MULTILINE)
REUSED = re.compile(r"edibuild: (\S+): reused from the cache", re.MULTILINE)


@dataclass(frozen=True)
class Names:
    """The bench's project names (all start with the prefix)."""

    prefix: str = "bench"

    @property
    def project(self) -> str:
        """The copy of the qemu VM project that most rows build."""
        return f"{self.prefix}-qemu-amd64"

    @property
    def twin(self) -> str:
        """The same VM under another name (rows 7 and 8)."""
        return f"{self.prefix}-twin-amd64"

    @property
    def pi(self) -> str:
        """The copy of the Raspberry Pi 3 project."""
        return f"{self.prefix}-pi3-arm64"

    @property
    def layer_prefix(self) -> str:
        """The start of the LXD aliases of the bench projects' layers."""
        return f"edibuild-layer-{self.prefix}-"

    def many(self, index: int) -> str:
        """The name of one of the MANY projects that are only loaded."""
        return f"{self.prefix}-many-{index:02d}"


NAMES = Names()


@dataclass(frozen=True)
class Target:
    """A row's target: at most `seconds`, at most `factor` times the bare start-up, and
    (with `no_stage`) no stage running at all."""

    seconds: float
    factor: float | None = None
    no_stage: bool = False

    def text(self) -> str:
        """The target as the table shows it."""
        parts = [f"<= {self.seconds:g} s"]
        if self.factor is not None:
            parts.append(f"<= {self.factor:g}x doit --version")
        if self.no_stage:
            parts.append("no stage runs")
        return ", ".join(parts)

    def met(self, result: Result, bare: float | None) -> bool:
        """True when the result meets the target."""
        if result.seconds > self.seconds or not result.ok:
            return False
        if self.factor is not None and bare is not None and result.seconds > self.factor * bare:
            return False
        return not (self.no_stage and result.ran)


@dataclass
class Scenario:
    """A named doit invocation, an optional edit before it, and optional follow-ups."""

    name: str
    args: list[str]
    before: Callable[[], None] | None = None
    then: list[str] | None = None
    target: Target | None = None
    repeat: int = 1

    @property
    def ident(self) -> str:
        """What `--only` selects the row by: `1`, `4b`, `P4`, `version`, `list`."""
        head = self.name.split(" ", 1)[0].rstrip(".:")
        return head if any(c.isdigit() for c in head) else head.lower()


@dataclass
class Result:
    """One measured scenario."""

    name: str
    seconds: float
    peak_mb: float
    ran: list[str]
    ok: bool
    load: float = 0.0
    where: list[str] = field(default_factory=list)
    target: Target | None = None


def environment() -> dict[str, str]:
    """The environment that points doit at the bench's private workspace."""
    env = dict(os.environ)
    env.update(
        EDIBUILD_PROJECTS=str(OUT / "projects"),
        EDIBUILD_ARTIFACTS=str(OUT / "artifacts"),
        EDIBUILD_STATE=str(OUT / "state"),
    )
    env.pop("EDIBUILD_CACHE", None)  # the cache lives in the bench's state
    # Start-up as users see it: Python's compiled modules cached, not compiled every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def doit_argv() -> list[str]:
    """The doit command of this checkout (the virtualenv's when there is one)."""
    venv = REPO / ".venv" / "bin" / "doit"
    return [str(venv)] if venv.exists() else [sys.executable, "-m", "doit"]


def measure(name: str, args: list[str]) -> Result:
    """Run one doit command and measure it."""
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen(
        [*doit_argv(), *args],
        cwd=REPO,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # rusage of this command and its children
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    log = OUT / "logs" / f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(out)
    reused = set(REUSED.findall(out))
    tasks = [t for t in dict.fromkeys(RAN.findall(out)) if not t.startswith("image:")]
    where = [label(t, t in reused) for t in tasks]
    ran = [t for t in tasks if t not in reused]
    return Result(name, seconds, usage.ru_maxrss / 1024, ran, code == 0, load, where)


def manifest_of(project: str, stage: str) -> dict[str, Any]:
    """A stage's manifest in the bench workspace ({} when there is none)."""
    path = OUT / "artifacts" / project / f"{stage}.manifest.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    return {}


def phases_text(phases: dict[str, float], least: float = 0.5) -> str:
    """`launch 4 s, playbooks 5.5 s`: the phases that took at least `least` seconds."""
    shown = [f"{k} {v:.1f} s" for k, v in phases.items() if v >= least]
    return ", ".join(shown)


def label(task: str, reused: bool) -> str:
    """A task that ran, for the table: its stage, seconds, phases, and the project when it
    is not one of the main ones."""
    name, _, project = task.partition(":")
    if reused:
        text = f"{name} (from cache)"
    else:
        manifest = manifest_of(project, name)
        text = name
        if "seconds" in manifest:
            text += f" {manifest['seconds']:.1f} s"
        phases = phases_text((manifest.get("info") or {}).get("phases") or {})
        if phases:
            text += f" ({phases})"
    return text if project in (NAMES.project, NAMES.pi) else f"{text} [{project}]"


def prepare(cold: bool) -> None:
    """Copy the shipped projects into the bench workspace; empty it for a cold build."""
    if cold and OUT.exists():
        shutil.rmtree(OUT / "artifacts", ignore_errors=True)
        shutil.rmtree(OUT / "state", ignore_errors=True)
    if cold:
        delete_bench_layers()
    shutil.rmtree(OUT / "projects", ignore_errors=True)
    shutil.copytree(REPO / "projects", OUT / "projects")
    for source, name in ((SOURCE, NAMES.project), (PI_SOURCE, NAMES.pi)):
        shutil.copy(OUT / "projects" / f"{source}.yml", OUT / "projects" / f"{name}.yml")
    vm = OUT / "projects" / f"{SOURCE}.yml"
    for index in range(1, MANY + 1):
        shutil.copy(vm, OUT / "projects" / f"{NAMES.many(index)}.yml")


def delete_bench_layers() -> None:
    """Delete the LXD layer images of the bench's projects (a cold build starts bare)."""
    listing = subprocess.run(
        ["lxc", "image", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    for image in json.loads(listing.stdout):
        if any(a["name"].startswith(NAMES.layer_prefix) for a in image.get("aliases") or []):
            subprocess.run(["lxc", "image", "delete", image["fingerprint"]], check=True)


def stage_times(project: str) -> str:
    """Seconds each stage of a project took in its last build, with their phases."""
    lines = ["| stage | seconds | reused from cache | where the time went |", "|---|---:|---|---|"]
    for manifest in sorted((OUT / "artifacts" / project).glob("*.manifest.json")):
        data = json.loads(manifest.read_text())
        reused = "yes" if data.get("reused") else "no"
        phases = phases_text((data.get("info") or {}).get("phases") or {}, least=0.05)
        lines.append(f"| {data['stage']} | {data.get('seconds', 0):.1f} | {reused} | {phases} |")
    return "\n".join(lines)


def task_times(project: str, count: int = 12) -> str:
    """The slowest Ansible tasks of the project's last configure run, and each playbook."""
    info = manifest_of(project, "configure").get("info") or {}
    books = info.get("playbooks") or []
    if not books:
        return ""
    lines = ["| playbook | seconds | tasks | slowest tasks |", "|---|---:|---:|---|"]
    for book in books:
        timings = sorted(book.get("task_seconds") or [], key=lambda t: -(t.get("seconds") or 0))
        slow = ", ".join(f"{t['task']} {t['seconds']:.1f} s" for t in timings[:3] if t["seconds"])
        lines.append(f"| {book['key']} | {book.get('seconds', 0):.1f} | {book['tasks']} | {slow} |")
    every = [
        (t.get("seconds") or 0, book["key"], t["task"])
        for book in books
        for t in book.get("task_seconds") or []
    ]
    lines += ["", "| slowest tasks | playbook | seconds |", "|---|---|---:|"]
    lines += [f"| {task} | {key} | {sec:.1f} |" for sec, key, task in sorted(every)[::-1][:count]]
    return "\n".join(lines)


def run_one(scenario: Scenario) -> Result:
    """Measure a scenario (the median of its repeats), with its follow-up if any."""
    runs = sorted(
        (measure(scenario.name, scenario.args) for _ in range(scenario.repeat)),
        key=lambda r: r.seconds,
    )
    result = runs[len(runs) // 2]
    if scenario.repeat > 1:
        result.seconds = statistics.median(r.seconds for r in runs)
    if scenario.then:
        more = measure(scenario.name, scenario.then)
        result = Result(
            result.name,
            result.seconds + more.seconds,
            max(result.peak_mb, more.peak_mb),
            result.ran + more.ran,
            result.ok and more.ok,
            result.load,
            result.where + more.where,
        )
    result.target = scenario.target
    return result


def run_all(todo: Iterable[Scenario]) -> tuple[list[Result], list[str]]:
    """Run scenarios in order; return their results and the details of cold builds."""
    results = []
    details = []
    for scenario in todo:
        if scenario.before is not None:
            scenario.before()
        result = run_one(scenario)
        results.append(result)
        print(f"{result.name}: {result.seconds:.2f} s, load {result.load:.1f}", flush=True)
        print(f"  {'; '.join(result.where) or 'no stage ran'}", flush=True)
        if "cold build" in scenario.name:
            project = scenario.args[-1].split(":", 1)[1]
            text = (
                f"\n## Where the cold build of {project} spent its time\n\n"
                f"{stage_times(project)}\n\n{task_times(project)}\n"
            )
            details.append(text)
            print(text, flush=True)
    return results, details
