"""Benchmark edibuild's rebuilds: prints a table and writes bench/results.md.

Each scenario runs the real `doit` in a private copy of the projects, artifacts and cache
(bench/out/), so the user's own builds are untouched. For each it records wall time, the
peak memory of the largest process, and the stages that ran. The projects are copied
under names of their own (`bench-...`), so their LXD layers are the bench's alone; a cold
run deletes them with the cache. `--pi` adds the Raspberry Pi 3 scenarios (arm64 built
under qemu-user emulation: about half an hour more).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
SOURCE, PI_SOURCE = "qemu-bookworm-amd64", "pi3-bookworm-arm64"
PROJECT, TWIN, PI = "bench-qemu-amd64", "bench-twin-amd64", "bench-pi3-arm64"
LAYER_PREFIX = "edibuild-layer-bench-"
# doit's ".  TASK" lines; with -n 2 one may follow another process's line without a newline.
RAN = re.compile(r"(?:^|(?<=[^\s]))\.  ([\w.-]+:[\w.-]+)", re.MULTILINE)
REUSED = re.compile(r"edibuild: (\S+): reused from the cache", re.MULTILINE)


@dataclass
class Scenario:
    """A named doit invocation, an optional edit before it, and optional follow-ups."""

    name: str
    args: list[str]
    before: Callable[[], None] | None = None
    then: list[str] | None = None


@dataclass
class Result:
    """One measured scenario."""

    name: str
    seconds: float
    peak_mb: float
    ran: list[str]
    ok: bool


def environment() -> dict[str, str]:
    """The environment that points doit at the bench's private workspace."""
    env = dict(os.environ)
    env.update(
        EDIBUILD_PROJECTS=str(OUT / "projects"),
        EDIBUILD_ARTIFACTS=str(OUT / "artifacts"),
        EDIBUILD_STATE=str(OUT / "state"),
    )
    return env


def doit_argv() -> list[str]:
    """The doit command of this checkout (the virtualenv's when there is one)."""
    venv = REPO / ".venv" / "bin" / "doit"
    return [str(venv)] if venv.exists() else [sys.executable, "-m", "doit"]


def measure(name: str, args: list[str]) -> Result:
    """Run one doit command and measure it."""
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
    ran = [f"{t} (from cache)" if t in reused else t for t in dict.fromkeys(RAN.findall(out))]
    ran = [t for t in ran if not t.startswith("image:")]
    return Result(name, seconds, usage.ru_maxrss / 1024, [label(t) for t in ran], code == 0)


def label(task: str) -> str:
    """A task that ran, for the table: its stage, the seconds its manifest records, and the
    project when it is not one of the scenario's main projects."""
    name, _, rest = task.partition(":")
    project, _, cached = rest.partition(" ")
    text = name
    if not cached:
        manifest = OUT / "artifacts" / project / f"{name}.manifest.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            text += f" {json.loads(manifest.read_text())['seconds']:.0f} s"
    else:
        text += " (from cache)"
    return text if project in (PROJECT, PI) else f"{text} [{project}]"


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
    for source, name in ((SOURCE, PROJECT), (PI_SOURCE, PI)):
        shutil.copy(OUT / "projects" / f"{source}.yml", OUT / "projects" / f"{name}.yml")


def delete_bench_layers() -> None:
    """Delete the LXD layer images of the bench's projects (a cold build starts bare)."""
    listing = subprocess.run(
        ["lxc", "image", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    for image in json.loads(listing.stdout):
        if any(a["name"].startswith(LAYER_PREFIX) for a in image.get("aliases") or []):
            subprocess.run(["lxc", "image", "delete", image["fingerprint"]], check=True)


def scenarios() -> list[Scenario]:
    """The scenarios of issue 6, in order; each may edit the projects first."""
    target = [f"image:{PROJECT}"]
    projects = OUT / "projects"
    cleanup = projects / "plugins" / "playbooks" / "cleanup" / "main.yml"
    marker = marker_task("/etc/edibuild-bench")
    return [
        Scenario("doit --version (bare start-up)", ["--version"]),
        Scenario("doit list", ["list"]),
        Scenario("1. cold build (empty cache)", target),
        Scenario(
            "1b. boot test of that image (doit boottest:, not part of image:)",
            [f"boottest:{PROJECT}"],
        ),
        Scenario("2. no-op", target),
        Scenario(
            "3. edit of the last playbook (changes the rootfs)",
            target,
            edit(cleanup, "  tasks:\n", marker),
        ),
        Scenario(
            "4. playbook comment edit (early cut-off)",
            target,
            edit(cleanup, "---\n", "---\n# a comment (bench edit)\n"),
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
        Scenario("7. second project sharing the bootstrap", [f"image:{TWIN}"], add_twin),
        Scenario(
            "8a. two projects one after the other",
            [f"configure:{PROJECT}"],
            forget_configure,
            then=[f"configure:{TWIN}"],
        ),
        Scenario(
            "8b. the same two projects in parallel (-n 2)",
            ["-n", "2", f"configure:{PROJECT}", f"configure:{TWIN}"],
            forget_configure,
        ),
        Scenario(
            "after 8: image: of both (export reruns, early cut-off stops the rest)",
            [f"image:{PROJECT}", f"image:{TWIN}"],
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
    cleanup = OUT / "projects" / "plugins" / "playbooks" / "cleanup" / "main.yml"
    marker = marker_task("/etc/bench-pi")
    target = [f"image:{PI}"]
    return [
        Scenario("P1. Raspberry Pi 3 arm64: cold build (emulated)", target),
        Scenario("P2. its boot test on qemu's raspi3b", [f"boottest:{PI}"]),
        Scenario("P3. its no-op", target),
        Scenario(
            "P4. edit of a late playbook (changes the rootfs)",
            target,
            edit(cleanup, "  tasks:\n", marker),
        ),
    ]


def add_twin() -> None:
    """A second project: the same VM under another name and hostname."""
    source = (OUT / "projects" / f"{SOURCE}.yml").read_text()
    twin = source.replace("parameters:\n", "parameters:\n  hostname: twin-vm\n", 1)
    (OUT / "projects" / f"{TWIN}.yml").write_text(twin)


def forget_configure() -> None:
    """Make both projects configure again (an edit of a playbook both use)."""
    path = OUT / "projects" / "plugins" / "playbooks" / "base_system" / "main.yml"
    path.write_text(path.read_text() + f"# bench edit {time.time()}\n")


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
    """Seconds each stage of a project took in its last build, from the stage manifests."""
    lines = ["| stage | seconds | reused from cache | where the time went |", "|---|---:|---|---|"]
    for manifest in sorted((OUT / "artifacts" / project).glob("*.manifest.json")):
        data = json.loads(manifest.read_text())
        reused = "yes" if data.get("reused") else "no"
        phases = (data.get("info") or {}).get("phases") or {}
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
        lines.append(f"| {data['stage']} | {data.get('seconds', 0):.1f} | {reused} | {parts} |")
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    """The results as a Markdown table; shares are of the cold build of the same group."""
    lines = [
        "| scenario | wall time | share of the cold build | peak memory | stages that ran |",
        "|---|---:|---:|---:|---|",
    ]
    cold = 0.0
    for r in results:
        if "cold build" in r.name:
            cold = r.seconds
        ran = ", ".join(r.ran) or "none"
        share = f"{100 * r.seconds / cold:.0f} %" if cold and "cold build" not in r.name else ""
        status = "" if r.ok else " (FAILED)"
        lines.append(
            f"| {r.name}{status} | {r.seconds:.2f} s | {share} | {r.peak_mb:.0f} MB | {ran} |"
        )
    return "\n".join(lines)


def noop_only() -> int:
    """Re-measure the cheap scenarios (median of 3) and append them to the results."""
    rows = []
    for name, argv in (
        ("doit --version (bare start-up)", ["--version"]),
        ("doit list", ["list"]),
        ("no-op", [f"image:{PROJECT}"]),
    ):
        runs = sorted((measure(name, argv) for _ in range(3)), key=lambda r: r.seconds)
        rows.append(runs[1])
        print(f"{name}: {runs[1].seconds:.2f} s (median of 3)", flush=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    section = (
        f"\n## Start-up and no-op, median of 3\n\nMeasured {stamp}, load average {load:.1f}.\n\n"
        f"{table(rows)}\n"
    )
    results = REPO / "bench" / "results.md"
    results.write_text((results.read_text() if results.exists() else "") + section)
    print(section)
    return 0 if all(r.ok for r in rows) else 1


def run_all(todo: list[Scenario]) -> tuple[list[Result], dict[str, str]]:
    """Run scenarios in order; return their results and the stage times of cold builds."""
    results = []
    cold_stages = {}
    for scenario in todo:
        if scenario.before is not None:
            scenario.before()
        result = measure(scenario.name, scenario.args)
        if scenario.then:
            more = measure(scenario.name, scenario.then)
            result = Result(
                result.name,
                result.seconds + more.seconds,
                max(result.peak_mb, more.peak_mb),
                result.ran + more.ran,
                result.ok and more.ok,
            )
        results.append(result)
        print(f"{result.name}: {result.seconds:.2f} s, ran {result.ran or 'nothing'}", flush=True)
        if "cold build" in scenario.name:
            project = scenario.args[-1].split(":", 1)[1]
            cold_stages[project] = stage_times(project)
            print(cold_stages[project], flush=True)
    return results, cold_stages


def main() -> int:
    """Run the scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="keep the bench cache (no cold build)")
    parser.add_argument("--pi", action="store_true", help="add the Raspberry Pi 3 scenarios")
    parser.add_argument(
        "--noop-only",
        action="store_true",
        help="only time start-up, list and the no-op (3 runs each, median) on the existing "
        "bench workspace, and add them to bench/results.md",
    )
    args = parser.parse_args()
    if args.noop_only:
        return noop_only()
    prepare(cold=not args.warm)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    results, cold_stages = run_all(scenarios() + (pi_scenarios() if args.pi else []))
    text = table(results)
    stamp = datetime.now(UTC).strftime("%H:%M UTC")
    load = os.getloadavg()[0]
    stages = "".join(
        f"\n## Stage times of the cold build of {project}\n\n{times}\n"
        for project, times in cold_stages.items()
    )
    report = (
        f"# edibuild benchmark\n\nMeasured {started}-{stamp} with `python bench/bench.py"
        f"{' --pi' if args.pi else ''}` on {machine()}; load average at the end {load:.1f} "
        f"(other work shared the machine when it is above 2). Projects: `{PROJECT}` is a copy "
        f"of `{SOURCE}`, `{TWIN}` the same VM under another name, `{PI}` a copy of "
        f"`{PI_SOURCE}`.\n\n{text}\n{stages}"
    )
    (REPO / "bench" / "results.md").write_text(report)
    print()
    print(text)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
