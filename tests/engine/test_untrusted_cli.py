"""Untrusted projects through the real `doit`: refused before any work, one message with
file, line, key and hint, a non-zero exit, and nothing outside the test's folders (nor in
them, but for what edibuild owns) created, changed or removed: decoys around the
workspace prove it. Planning commands start no process and read no other file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.test_untrusted_config import CASES

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "projects"
AUDITED = Path(__file__).resolve().parent / "audited_doit.py"
OWNED = ("artifacts", "state", "cache")  # what edibuild may write in the workspace
PLANNING = [("list",), ("list", "--all"), ("config:{p}",), ("plugins:{p}",), ("why:{p}",),
            ("info", "bootstrap:{p}"), ("clean", "-n", "image:{p}"), ()]  # fmt: skip


def tree(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Every entry below `root` (but `skip`) with its kind, mode, size, mtime and content."""
    found: dict[str, tuple[str, ...]] = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(top, d) not in skip]
        for name in dirs + files:
            path = Path(top, name)
            st = path.lstat()
            if path.is_symlink():
                what = ("link", os.readlink(path))
            elif path.is_file():
                what = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                what = ("dir", "")  # its mtime changes when edibuild makes its own folders
            mtime = str(st.st_mtime_ns) if what[0] == "file" else ""
            found[str(path.relative_to(root))] = (*what, oct(st.st_mode), mtime)
    return found


def repo_status() -> str:
    """What git sees changed or new in the checkout (a test must not add to it)."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


@dataclass
class Guarded:
    """A workspace (projects, artifacts, state, cache) surrounded by decoys."""

    tmp: Path

    def __post_init__(self) -> None:
        self.ws = self.tmp / "ws"
        self.projects = self.ws / "projects"
        decoys = [self.tmp / "decoy.txt", self.ws / "decoy.txt", self.tmp / "beside" / "decoy.txt"]
        for decoy in [*decoys, self.ws / "artifacts-x" / "log"]:
            decoy.parent.mkdir(parents=True, exist_ok=True)
            decoy.write_text("keep me\n")
        self.env = dict(os.environ)
        for name in OWNED:
            self.env[f"EDIBUILD_{name.upper()}"] = str(self.ws / name)
        self.env["EDIBUILD_PROJECTS"] = str(self.projects)
        self.env["USER"] = "tester"
        self.env.pop("SUDO_USER", None)
        self.env.pop("SOURCE_DATE_EPOCH", None)

    def use(self, fixture: Path | None) -> None:
        """Copy a fixture in as the projects folder (None: it is there) and take stock."""
        if fixture is not None:
            shutil.copytree(fixture, self.projects, symlinks=True)
        self.before = tree(self.tmp, self.owned)
        self.repo_before = repo_status()

    @property
    def owned(self) -> tuple[Path, ...]:
        return tuple(self.ws / name for name in OWNED)

    def doit(self, *args: str, audit: Path | None = None) -> tuple[int, str]:
        command = [sys.executable, "-m", "doit", *args]
        if audit is not None:
            command = [sys.executable, str(AUDITED), str(audit), *args]
        proc = subprocess.run(
            command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        return proc.returncode, proc.stdout + proc.stderr

    def unchanged(self) -> None:
        """Nothing outside what edibuild owns was created, changed or removed."""
        assert tree(self.tmp, self.owned) == self.before
        assert repo_status() == self.repo_before


@pytest.fixture
def guarded(tmp_path: Path) -> Guarded:
    return Guarded(tmp_path)


def task(args: tuple[str, ...], project: str) -> list[str]:
    return [arg.format(p=project) for arg in args]


@pytest.mark.parametrize(("case", "line", "key", "words", "hint"), CASES)
@pytest.mark.parametrize(
    "command",
    [("list",), ("config:project",), ("why:project",), ("clean", "--forget", "image:project")],
)
def test_an_untrusted_project_is_refused_before_anything_runs(
    guarded: Guarded,
    case: str,
    line: int,
    key: str,
    words: str,
    hint: str,
    command: tuple[str, ...],
) -> None:
    guarded.use(FIXTURES / case)
    code, out = guarded.doit(*command)
    assert code == 3, out
    assert out.count("edibuild: error:") == 1, out
    assert f"{guarded.projects / 'project.yml'}:{line}: {key}: " in out, out
    assert words in out and "hint: " in out and hint in out
    assert "Traceback" not in out and "uid=" not in out
    assert not any(path.exists() for path in guarded.owned)
    guarded.unchanged()


@pytest.mark.parametrize("command", [("list",), ("clean", "--forget", "image:.."), ()])
def test_a_project_named_dots_cannot_clean_above_the_artifacts(
    guarded: Guarded, command: tuple[str, ...]
) -> None:
    """The issue's example: `...yml` was project `..`; cleaning it removed files one up."""
    guarded.use(FIXTURES / "bad-project-name")
    (guarded.ws / "log").mkdir()
    (guarded.ws / "log" / "disk.log").write_text("keep me\n")
    (guarded.ws / "disk.manifest.json").write_text("{}\n")
    guarded.before = tree(guarded.tmp, guarded.owned)
    code, out = guarded.doit(*command)
    assert code == 3, out
    assert f"{guarded.projects / '...yml'}: " in out and "'..' is not a valid name" in out
    assert out.count("edibuild: error:") == 1 and "Traceback" not in out
    guarded.unchanged()


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [("EDIBUILD_ARTIFACTS", "/", "root directory"),
     ("EDIBUILD_CACHE", "{ws}/decoy.txt", "not a folder"),
     ("EDIBUILD_STATE", "{ws}/decoy.txt/state", "is a file"),
     ("EDIBUILD_PROJECTS", "{ws}/missing", "does not exist"),
     ("EDIBUILD_ARTIFACTS", "{ws}/state", "overlaps")],
)  # fmt: skip
def test_bad_workspace_folders_are_refused_at_load(
    guarded: Guarded, variable: str, value: str, words: str
) -> None:
    guarded.use(FIXTURES / "tampered-state" / "projects")
    guarded.env[variable] = value.format(ws=guarded.ws)
    code, out = guarded.doit("list")
    assert code == 3, out
    assert out.count("edibuild: error:") == 1 and variable in out and words in out
    assert "hint: " in out and "Traceback" not in out
    assert not any(path.exists() for path in guarded.owned)
    guarded.unchanged()


def tampered(guarded: Guarded, pointer: dict[str, object]) -> Path:
    """The tampered-state project, with a .state pointer naming ../../decoy.txt."""
    guarded.use(FIXTURES / "tampered-state" / "projects")
    state = guarded.ws / "artifacts" / "tiny" / ".state"
    state.mkdir(parents=True)
    (state / "bootstrap.json").write_text(json.dumps(pointer))
    return state / "bootstrap.json"


POINTER = json.loads((FIXTURES / "tampered-state" / "pointer.json").read_text())


@pytest.mark.parametrize(
    "command",
    [("clean", "bootstrap:tiny"), ("clean", "--forget", "bootstrap:tiny"),
     ("clean", "-n", "bootstrap:tiny"), ("clean", "-c", "export:tiny")],
)  # fmt: skip
def test_a_tampered_pointer_makes_clean_refuse_with_one_message(
    guarded: Guarded, command: tuple[str, ...]
) -> None:
    pointer = tampered(guarded, POINTER)
    code, out = guarded.doit(*command)
    assert code == 1, out
    assert out.count("edibuild: error:") == 1, out
    assert f"bootstrap:tiny: {pointer} is not a pointer edibuild wrote" in out
    assert "hint: " in out and "Traceback" not in out
    assert pointer.exists()
    guarded.unchanged()


def test_a_tampered_key_file_makes_forget_refuse(guarded: Guarded) -> None:
    pointer = tampered(guarded, {"stage": "bootstrap", "outputs": {}})
    pointer.with_suffix(".key").write_text("../../../../decoy\n")
    code, out = guarded.doit("clean", "--forget", "bootstrap:tiny")
    assert code == 1, out
    assert out.count("edibuild: error:") == 1 and "refusing to delete" in out
    assert "Traceback" not in out
    guarded.unchanged()


@pytest.mark.parametrize(
    "command", [("list", "--status"), ("why:tiny",), ("info", "bootstrap:tiny")]
)
def test_a_tampered_pointer_is_not_trusted_when_planning(
    guarded: Guarded, command: tuple[str, ...]
) -> None:
    tampered(guarded, POINTER)
    code, out = guarded.doit(*command)
    assert code == (1 if command[0] == "info" else 0), out  # info: 1 = not up to date
    assert "Traceback" not in out
    if command == ("why:tiny",):
        assert "bootstrap:tiny would run" in out
    guarded.unchanged()


VALID = {
    "demo.yml": (
        "description: A valid project using every kind of plugin\n"
        "parameters: {architecture: amd64, suite: bookworm, hostname: demo}\n"
        "include: [common/base.yml]\n"
        "playbooks:\n  100_base:\n    path: plugins/base/main.yml\n"
        "    parameters: {default_user_name: edi}\n"
        "lxd_profiles:\n  10_limits: {path: profiles/limits.yml}\n"
        "layout:\n  partitions:\n    20_root: {size: auto, margin: 64MiB}\n"
        'mender: {device_type: qemu, artifact_name: "{{ edibuild_project_name }}-1"}\n'
        "boottest: {timeout: 60}\n"
        "postprocessing:\n  100_report:\n    path: scripts/report.sh\n"
        "    inputs: [disk.image]\n    outputs: {report: report.txt}\n"
    ),
    "common/base.yml": (
        'bootstrap:\n  architecture: "{{ architecture }}"\n  suite: "{{ suite }}"\n'
        "  tool: mmdebstrap\n"
    ),
    "plugins/base/main.yml": "- hosts: all\n",
    "plugins/base/templates/motd.j2": "hi\n",
    "profiles/limits.yml": "config: {}\n",
    "scripts/report.sh": "#!/bin/sh\n",
    "ssh_pub_keys/me.pub": "ssh-ed25519 AAAA me\n",
    "overlays/global.yml": "parameters: {greeting: hi}\n",
}


def audit(guarded: Guarded, args: list[str]) -> tuple[int, str, dict[str, list[str]]]:
    report = guarded.tmp / "audit.json"
    code, out = guarded.doit(*args, audit=report)
    data = json.loads(report.read_text())
    report.unlink()
    return code, out, data


def outside(paths: list[str], guarded: Guarded) -> list[str]:
    """The paths a planning command touched that are neither edibuild nor the workspace."""
    allowed = {REPO, guarded.ws, Path(sys.prefix), Path(sys.base_prefix), Path("/dev/null")}
    allowed |= {Path(p) for p in sys.path if p}
    return [p for p in paths if not any(Path(p).is_relative_to(a) for a in allowed)]


@pytest.mark.parametrize("args", PLANNING)
def test_planning_starts_no_process_and_reads_no_other_file(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    guarded = Guarded(tmp_path)
    for name, text in VALID.items():
        path = guarded.projects / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    guarded.use(None)
    code, out, data = audit(guarded, task(args, "demo"))
    assert code in (0, 1), out  # `info` exits 1 for a task that is not up to date
    assert "Traceback" not in out and "edibuild: error" not in out
    assert data["processes"] == []
    assert outside(data["paths"], guarded) == []
    guarded.unchanged()


@pytest.mark.parametrize("args", [("list",), ("config:project",), ("why:project",), ()])
def test_a_hostile_template_is_stopped_by_the_sandbox(
    guarded: Guarded, args: tuple[str, ...]
) -> None:
    guarded.use(FIXTURES / "sandbox-escape")
    code, out, data = audit(guarded, list(args))
    assert code == 3 and "unsafe" in out and "uid=" not in out, out
    assert data["processes"] == []
    assert outside(data["paths"], guarded) == []
    guarded.unchanged()
