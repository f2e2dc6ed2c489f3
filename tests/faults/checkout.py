"""A checkout of the fault harness: its own projects, artifacts and doit state, a cache that
may be shared, and the real `doit` run in it (to completion, or started for a fault)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edibuild import orphans
from edibuild.store.fsutil import read_json, sha256_file

REPO = Path(__file__).resolve().parents[2]
PROJECTS = Path(__file__).resolve().parent / "projects"
PROJECT = "fault-vm-amd64"
USER_STAGE = "compress"
# Stages in pipeline order (the user stage after the image stages); the tasks that build them.
STAGES = ("bootstrap", "import", "configure", "export", "partitions", "disk", "bmap", "mender",
          "boottest", "container", USER_STAGE)  # fmt: skip
UPSTREAM = {
    "bootstrap": (), "import": ("bootstrap",), "configure": ("import",),
    "export": ("configure",), "partitions": ("export",), "disk": ("partitions",),
    "bmap": ("disk",), "mender": ("partitions",), "boottest": ("partitions", "disk"),
    "container": ("configure",), USER_STAGE: ("disk",),
}  # fmt: skip
EXTRA_TASKS = ("boottest", "container")  # not part of image:NAME


def downstream(stage: str) -> list[str]:
    """The stages that read `stage`'s outputs, directly or not."""
    found: list[str] = []
    for other in STAGES:
        if any(up == stage or up in found for up in UPSTREAM[other]):
            found.append(other)
    return found


def recovery_tasks(stages: set[str]) -> list[str]:
    """The plain tasks that build everything, and the extra tasks touched by `stages`."""
    tasks = [f"image:{PROJECT}"]
    tasks += [f"{s}:{PROJECT}" for s in EXTRA_TASKS if s in stages]
    return tasks


@dataclass
class Run:
    """A finished doit run."""

    args: tuple[str, ...]
    code: int
    output: str
    seconds: float
    mark: str = ""


@dataclass
class Started:
    """A doit run in progress; its output is read as it comes (for timing a fault)."""

    proc: subprocess.Popen[str]
    args: tuple[str, ...]
    started: float
    lines: list[str] = field(default_factory=list)
    history: list[Run] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def mark(self) -> str:
        """The owner mark its commands carry (edibuild/orphans.py)."""
        return orphans.mark(self.proc.pid)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        """What it printed so far."""
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> bool:
        """Wait until `text` shows in its output (False if it ended or the time ran out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the reader may be behind
                return text in self.output()
            time.sleep(0.05)
        return False

    def finish(self, timeout: float) -> Run:
        """Wait for the end (kill it after `timeout` s: code -999 says it hung)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = -999
        if self.reader is not None:  # all it printed: on a busy machine the reader lags
            self.reader.join(30)
        run = Run(self.args, code, self.output(), time.monotonic() - self.started, self.mark)
        self.history.append(run)
        return run


def _ctrl_c_default() -> None:
    """Let doit take Ctrl-C as a terminal gives it: a harness started in the background
    (`cmd &` in a script) has SIGINT ignored, which its children inherit (and edibuild
    rightly leaves alone)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def copy_projects(target: Path) -> Path:
    """The harness's projects, copied to `target` (kept when they are the same already)."""
    if target.exists():
        same = all((target / p.relative_to(PROJECTS)).is_file()
                   and (target / p.relative_to(PROJECTS)).read_bytes() == p.read_bytes()
                   for p in PROJECTS.rglob("*") if p.is_file())  # fmt: skip
        if same:
            return _with_container_overlay(target)
        shutil.rmtree(target)
    shutil.copytree(PROJECTS, target)
    return _with_container_overlay(target)


def _with_container_overlay(projects: Path) -> Path:
    """The harness's dev container is root's (no developer account runs the harness), with
    a workspace beside the projects folder: never a folder in a real user's home."""
    overlay = projects / "overlays" / "global.yml"
    overlay.parent.mkdir(exist_ok=True)
    workspace = projects.parent / "dev-workspace"
    text = f"container: {{user: root, ssh: false, workspace: {workspace}}}\n"
    if not overlay.is_file() or overlay.read_text() != text:
        overlay.write_text(text)
    return projects


class Checkout:
    """A private workspace: artifacts and state of its own; a given cache and projects."""

    def __init__(
        self, root: Path, cache: Path, projects: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.root = root
        self.cache = cache
        # One projects folder for every checkout: the project's folder is an input of
        # configure (`edibuild_project_dir`), so checkouts at other paths share nothing
        # from configure on.
        self.projects = projects
        self.artifacts_root = root / "artifacts"
        self.state = root / "state"
        root.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.pop(orphans.OWNER_ENV, None)
        self.env.update(
            EDIBUILD_PROJECTS=str(self.projects),
            EDIBUILD_ARTIFACTS=str(self.artifacts_root),
            EDIBUILD_STATE=str(self.state),
            EDIBUILD_CACHE=str(cache),
        )
        self.env.update(env or {})
        self.artifacts_root = Path(self.env["EDIBUILD_ARTIFACTS"])
        self.marks: list[str] = []
        self.history: list[Run] = []

    @property
    def artifacts(self) -> Path:
        """The project's artifact folder."""
        return self.artifacts_root / PROJECT

    def log(self, stage: str) -> Path:
        """A stage's log."""
        return self.artifacts / "log" / f"{stage}.log"

    def argv(self, *args: str) -> list[str]:
        """The doit command of this checkout."""
        return [sys.executable, "-m", "doit", *args]

    def run(self, *args: str, timeout: float = 3600) -> Run:
        """Run `doit ARGS` to its end."""
        started = self.start(*args)
        return started.finish(timeout)

    def start(self, *args: str) -> Started:
        """Start `doit ARGS` in a session of its own (a Ctrl-C reaches only it)."""
        proc = subprocess.Popen(
            self.argv(*args),
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_ctrl_c_default,
        )
        started = Started(proc, args, time.monotonic(), history=self.history)
        self.marks.append(started.mark)
        started.reader = threading.Thread(target=started._read, daemon=True)
        started.reader.start()
        return started

    def need(self, *args: str, timeout: float = 3600) -> Run:
        """Run `doit ARGS`, which must succeed (harness set-up, not a measured run)."""
        result = self.run(*args, timeout=timeout)
        if result.code != 0:
            raise AssertionError(f"doit {' '.join(args)} failed ({result.code}):\n{result.output}")
        return result

    def pointer(self, stage: str) -> dict[str, dict[str, object]] | None:
        """The outputs a stage's pointer names, or None."""
        data = read_json(self.artifacts / ".state" / f"{stage}.json")
        return data.get("outputs") if isinstance(data, dict) else None

    def digests(self) -> dict[str, dict[str, str]]:
        """Each installed stage's output digests, as its pointer names them."""
        found = {}
        for stage in STAGES:
            outputs = self.pointer(stage)
            if outputs is not None:
                found[stage] = {n: str(o["sha256"]) for n, o in outputs.items()}
        return found

    def mismatched(self) -> list[str]:
        """Installed outputs whose bytes differ from the digest their pointer names."""
        wrong = []
        for stage in STAGES:
            for out in (self.pointer(stage) or {}).values():
                path = self.artifacts / str(out["file"])
                try:
                    actual = sha256_file(path)
                except OSError:
                    wrong.append(f"{stage}: {path.name} is missing but its pointer is there")
                    continue
                if actual != out["sha256"]:
                    wrong.append(f"{stage}: {path.name} does not hold the bytes its pointer names")
        return wrong

    def manifest(self, stage: str) -> dict[str, object]:
        """A stage's manifest ({} when there is none)."""
        data = read_json(self.artifacts / f"{stage}.manifest.json")
        return data if isinstance(data, dict) else {}

    def key(self, stage: str) -> str | None:
        """The input key of a stage's installed outputs."""
        try:
            return (self.artifacts / ".state" / f"{stage}.key").read_text().strip() or None
        except OSError:
            return None

    def info(self, stage: str) -> dict[str, object]:
        """A stage's info from its manifest."""
        info = self.manifest(stage).get("info")
        return info if isinstance(info, dict) else {}

    def dump(self, path: Path) -> None:
        """Keep what a failed cell looked like (for the report)."""
        env = {k: v for k, v in self.env.items() if k.startswith(("EDIBUILD_", "LXD_"))}
        data = {"digests": self.digests(), "env": env}
        path.write_text(json.dumps(data, indent=2) + "\n")
