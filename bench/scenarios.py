"""The bench's rows: the doit commands bench/bench.py measures, and the edits before them.

Kept apart from the measuring (bench/measure.py) so the list of rows (issues 6 and 15)
reads on its own. The project names come from `measure.NAMES` at call time (bench.py sets
it from `--prefix`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import measure
from measure import MANY, OUT, REPEAT, SOURCE, Scenario, Target


def edit(path: Path, old: str, new: str) -> Callable[[], None]:
    """An edit of a project file, applied just before a scenario."""

    def apply() -> None:
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"bench: cannot apply edit to {path}: {old!r} not found")
        path.write_text(text.replace(old, new, 1))

    return apply


def plugin(*parts: str) -> Path:
    """A file of the bench's copy of the shipped plugins."""
    return OUT.joinpath("projects", "plugins", *parts)


def scenarios() -> list[Scenario]:
    """The rows of issues 6 and 15 for the VM project, in order; each may edit first."""
    project, twin = measure.NAMES.project, measure.NAMES.twin
    target = [f"image:{project}"]
    return start_rows(project, target) + edit_rows(target) + twin_rows(project, twin)


def start_rows(project: str, target: list[str]) -> list[Scenario]:
    """Start-up, `doit list`, the cold build, its boot test and the no-op (rows up to 2)."""
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
    ]


def edit_rows(target: list[str]) -> list[Scenario]:
    """Rebuilds after an edit of a playbook, the layout or the package list (rows 3 to 6)."""
    projects = OUT / "projects"
    cleanup = plugin("playbooks", "cleanup", "main.yml")
    no_stage = Target(0.5, no_stage=True)
    return [
        Scenario(
            "3. edit of the last playbook to a flashable image (.img, .bmap, .mender)",
            target,
            edit(cleanup, "  tasks:\n", marker_task("/etc/edibuild-bench")),
            target=Target(20),
        ),
        Scenario(
            "3b. a second edit of the last playbook (its layer was used once: unpacked in LXD)",
            target,
            edit(cleanup, "  tasks:\n", marker_task("/etc/edibuild-bench-again")),
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
            # Trailing blanks on a line of their own: the `  tasks:` line later rows
            # insert after stays as it was.
            edit(cleanup, "  tasks:\n", "  tasks:\n   \n\n"),
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
    ]


def twin_rows(project: str, twin: str) -> list[Scenario]:
    """A second project sharing the bootstrap, and both configured in turn and at once
    (rows 7 to 9)."""
    return [
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
    target = [f"image:{measure.NAMES.pi}"]
    return [
        Scenario("P1. Raspberry Pi 3 arm64: cold build (emulated)", target, target=Target(300)),
        Scenario("P2. its boot test on qemu's raspi3b", [f"boottest:{measure.NAMES.pi}"]),
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
    (OUT / "projects" / f"{measure.NAMES.twin}.yml").write_text(twin)


def forget_configure() -> None:
    """Make both projects configure again: a new task in a playbook both use (a comment
    would not do: the key follows what a playbook says)."""
    path = plugin("playbooks", "base_system", "main.yml")
    path.write_text(
        path.read_text() + f"\n    - name: Bench edit {time.time()}\n"
        "      ansible.builtin.command: 'true'\n      changed_when: false\n"
    )
