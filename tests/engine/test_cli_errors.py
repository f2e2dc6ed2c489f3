"""Bad input through the real `doit` command: one clear message, non-zero exit, nothing made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "projects"

# fixture folder -> what the message must say (besides the file and line)
BAD_CONFIG = {
    "yaml-syntax": "project.yml:",
    "unknown-key": "did you mean",
    "jinja-undefined": "undefined",
    "missing-plugin": "not found",
    "unknown-architecture": "architecture",
    "unknown-suite": "suite",
}


def doit(tmp: Path, projects: Path, *args: str, path: str | None = None) -> tuple[int, str]:
    """Run the real doit on a projects folder with a private state and artifact dir."""
    env = dict(os.environ)
    env.update(
        EDIBUILD_PROJECTS=str(projects),
        EDIBUILD_STATE=str(tmp / "state"),
        EDIBUILD_ARTIFACTS=str(tmp / "artifacts"),
    )
    if path is not None:
        env["PATH"] = path
    proc = subprocess.run(
        [sys.executable, "-m", "doit", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
@pytest.mark.parametrize("command", [("list",), ("bootstrap:project",)])
def test_bad_project_is_reported_before_anything_runs(
    tmp_path: Path, case: str, command: tuple[str, ...]
) -> None:
    code, out = doit(tmp_path, FIXTURES / case, *command)
    assert code != 0
    assert "Traceback" not in out
    assert "project.yml:" in out  # file and line
    assert BAD_CONFIG[case].lower() in out.lower()
    assert out.count("edibuild: error:") == 1
    assert not (tmp_path / "state").exists()
    assert not (tmp_path / "artifacts").exists()


def _project(tmp: Path, mirror: str = "http://deb.debian.org/debian") -> Path:
    projects = tmp / "projects"
    projects.mkdir()
    (projects / "tiny.yml").write_text(
        "description: tiny\n"
        "bootstrap:\n"
        "  architecture: amd64\n"
        "  suite: bookworm\n"
        f"  mirror: {mirror}\n"
        "  tool: mmdebstrap\n"
    )
    return projects


def test_missing_tools_are_named_with_their_packages(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root check comes first for other users")
    code, out = doit(tmp_path, _project(tmp_path), "bootstrap:tiny", path="/nonexistent")
    assert code == 1
    assert "mmdebstrap" in out and "apt-get install" in out and "zstd" in out
    assert "Traceback" not in out
    assert not (tmp_path / "artifacts" / "tiny" / "bootstrap.tar.zst").exists()


def test_unreachable_mirror_fails_before_bootstrapping(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root check comes first for other users")
    # A closed port on this machine's loopback: refused at once, no traffic leaves.
    code, out = doit(tmp_path, _project(tmp_path, "http://127.0.0.1:9/debian"), "bootstrap:tiny")
    assert code == 1
    assert "does not answer" in out and "hint:" in out and "tiny.yml" in out
    assert "Traceback" not in out
    assert not (tmp_path / "artifacts" / "tiny" / "bootstrap.tar.zst").exists()
    assert not (tmp_path / "artifacts" / "tiny" / ".state" / "bootstrap.json").exists()


MINIMAL = "bootstrap: {architecture: amd64, suite: bookworm, tool: mmdebstrap}\n"


def test_a_run_naming_one_project_loads_that_project_alone(tmp_path: Path) -> None:
    """`doit why:good` reads good.yml only (fast with many projects); `doit list` and a
    group name load every project, so the broken one is reported there."""
    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / "good.yml").write_text(MINIMAL)
    (projects / "broken.yml").write_text((FIXTURES / "unknown-key" / "project.yml").read_text())
    code, out = doit(tmp_path, projects, "why:good")
    assert code == 0, out
    assert "broken" not in out
    for command in (("list",), ("why",), ("why:brokn",)):
        code, out = doit(tmp_path, projects, *command)
        assert code != 0 and "broken.yml:" in out, (command, out)


def test_a_bare_list_shows_every_project(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    projects.mkdir()
    for name in ("one", "two"):
        (projects / f"{name}.yml").write_text(MINIMAL)
    code, out = doit(tmp_path, projects, "list")
    assert code == 0, out
    assert "one" in out and "two" in out and "bootstrap" in out
    code, out = doit(tmp_path, projects, "list", "one")
    assert code == 0 and "bootstrap:one" in out and "two" not in out, out
