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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


def edit(path: Path, old: str, new: str) -> Callable[[], None]:
    """An edit of a project file, applied just before a scenario."""

    def apply() -> None:
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"bench: cannot apply edit to {path}: {old!r} not found")
        path.write_text(text.replace(old, new, 1))

    return apply


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


def plugin(*parts: str) -> Path:
    """A file of the bench's copy of the shipped plugins."""
    return OUT.joinpath("projects", "plugins", *parts)


def scenarios() -> list[Scenario]:
    """The rows of issues 6 and 15 for the VM project, in order; each may edit first."""
    project, twin = NAMES.project, NAMES.twin
    target = [f"image:{project}"]
    projects = OUT / "projects"
    cleanup = plugin("playbooks", "cleanup", "main.yml")
    no_stage = Target(0.5, no_stage=True)
    quick = Target(0.3, factor=3)
    return [
        Scenario("version: doit --version (bare start-up)", ["--version"], repeat=REPEAT),
        Scenario(f"list: doit list ({MANY + 2} projects)", ["list"], target=quick, repeat=REPEAT),
        Scenario("1. cold build (empty cache)", target, target=Target(120)),
        Scenario(
            "1b. boot test of that image (doit boottest:, not part of image:)",
            [f"boottest:{project}"],
        ),
        Scenario(f"2. no-op ({MANY + 2} projects)", target, target=quick, repeat=REPEAT),
        Scenario(
            "3. edit of the last playbook to a flashable image (.img, .bmap, .mender)",
            target,
            edit(cleanup, "  tasks:\n", marker_task("/etc/edibuild-bench")),
            target=Target(20),
        ),
        Scenario(
            "4. playbook comment edit",
            target,
            edit(cleanup, "---\n", "---\n# a comment (bench edit)\n"),
            target=no_stage,
        ),
        Scenario(
            "4b. playbook whitespace edit",
            target,
            edit(cleanup, "  tasks:\n", "  tasks:   \n\n"),
            target=no_stage,
        ),
        Scenario(
            "5. layout edit (data partition size)",
            target,
            edit(projects / "common" / "qemu-vm.yml", "size: 64MiB}", "size: 80MiB}"),
        ),
        Scenario(
            "6. bootstrap package list edit",
            target,
            edit(
                projects / "common" / "debian.yml", "    - python3\n", "    - python3\n    - less\n"
            ),
        ),
        Scenario("7. second project sharing the bootstrap", [f"image:{twin}"], add_twin),
        Scenario(
            "8a. two projects one after the other",
            [f"configure:{project}"],
            forget_configure,
            then=[f"configure:{twin}"],
        ),
        Scenario(
            "8b. the same two projects in parallel (-n 2)",
            ["-n", "2", f"configure:{project}", f"configure:{twin}"],
            forget_configure,
        ),
        Scenario(
            "9. image: of both after 8 (export reruns, early cut-off stops the rest)",
            [f"image:{project}", f"image:{twin}"],
        ),
    ]


def marker_task(dest: str) -> str:
    """A playbook `tasks:` line followed by a task that writes `dest` (a rootfs change)."""
    return (
        "  tasks:\n"
        f"    - name: Leave a marker at {dest} (bench edit)\n"
        f"      ansible.builtin.copy: {{dest: {dest}, content: edited, mode: '0644'}}\n"
        "\n"
    )


def pi_scenarios() -> list[Scenario]:
    """The Raspberry Pi 3 rows: arm64 under emulation, cold, booted, after an edit."""
    cleanup = plugin("playbooks", "cleanup", "main.yml")
    target = [f"image:{NAMES.pi}"]
    return [
        Scenario("P1. Raspberry Pi 3 arm64: cold build (emulated)", target, target=Target(300)),
        Scenario("P2. its boot test on qemu's raspi3b", [f"boottest:{NAMES.pi}"]),
        Scenario("P3. its no-op", target, target=Target(0.3, factor=3), repeat=REPEAT),
        Scenario(
            "P4. edit of a late playbook (changes the rootfs)",
            target,
            edit(cleanup, "  tasks:\n", marker_task("/etc/bench-pi")),
            target=Target(60),
        ),
    ]


def add_twin() -> None:
    """A second project: the same VM under another name and hostname."""
    source = (OUT / "projects" / f"{SOURCE}.yml").read_text()
    twin = source.replace("parameters:\n", "parameters:\n  hostname: twin-vm\n", 1)
    (OUT / "projects" / f"{NAMES.twin}.yml").write_text(twin)


def forget_configure() -> None:
    """Make both projects configure again: a new task in a playbook both use (a comment
    would not do: the key follows what a playbook says)."""
    path = plugin("playbooks", "base_system", "main.yml")
    path.write_text(
        path.read_text() + f"\n    - name: Bench edit {time.time()}\n"
        "      ansible.builtin.command: 'true'\n      changed_when: false\n"
    )


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
    global NAMES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="keep the bench cache (no cold build)")
    parser.add_argument("--pi", action="store_true", help="add the Raspberry Pi 3 rows")
    parser.add_argument("--only", default="", help="rows to run, e.g. version,list,1,2,3,4,4b")
    parser.add_argument("--prefix", default="bench", help="start of the bench projects' names")
    parser.add_argument(
        "--no-record", action="store_true", help="print the table, leave bench/results.md alone"
    )
    args = parser.parse_args()
    NAMES = Names(args.prefix)
    todo = scenarios() + pi_scenarios()
    if args.only:
        todo = select(todo, args.only)
    elif not args.pi:
        todo = scenarios()
    cold = not args.warm and any(s.ident in ("1", "P1") for s in todo)
    prepare(cold=cold)
    measure("warm-up", ["--version"])  # compile and cache the modules once
    measure("warm-up", ["list"])
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    results, details = run_all(todo)
    text = table(results)
    stamp = datetime.now(UTC).strftime("%H:%M UTC")
    command = " ".join(["python bench/bench.py", *sys.argv[1:]])
    report = (
        f"# edibuild benchmark\n\nMeasured {started}-{stamp} with `{command}` on {machine()}. "
        f"The load column is the 1-minute load average when the row started (the machine "
        f"has {os.cpu_count()} cores: above that, other work shared it). Projects: "
        f"`{NAMES.project}` is a copy of `{SOURCE}`, `{NAMES.twin}` the same VM under another "
        f"name, `{NAMES.pi}` a copy of `{PI_SOURCE}`; {MANY} more copies of `{SOURCE}` are "
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
