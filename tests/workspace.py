"""A private edibuild workspace driven through the real `doit` command (for tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RAN = re.compile(r"^\.  ([\w-]+):", re.MULTILINE)


class DoitWorkspace:
    """A copy of a projects folder with its own artifacts, state and (optionally) cache."""

    def __init__(self, tmp: Path, projects: Path, cache: Path | None = None) -> None:
        self.tmp = tmp
        self.projects = tmp / "projects"
        shutil.copytree(projects, self.projects)
        self.env = dict(os.environ)
        self.env.update(
            EDIBUILD_PROJECTS=str(self.projects),
            EDIBUILD_STATE=str(tmp / "state"),
            EDIBUILD_ARTIFACTS=str(tmp / "artifacts"),
        )
        if cache is not None:
            self.env["EDIBUILD_CACHE"] = str(cache)

    def run(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """Run `doit ARGS` in this workspace."""
        return subprocess.run(
            [sys.executable, "-m", "doit", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def doit(self, *args: str, timeout: float = 1800) -> str:
        """Run `doit ARGS`, require success, return its output."""
        proc = self.run(*args, timeout=timeout)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        return out

    def ran(self, *args: str) -> list[str]:
        """The stages (task basenames) a successful `doit ARGS` ran, `image` left out."""
        return [s for s in RAN.findall(self.doit(*args)) if s != "image"]

    def artifacts(self, project: str) -> Path:
        """The artifact directory of a project."""
        return self.tmp / "artifacts" / project

    def edit(self, rel: str, old: str, new: str) -> None:
        """Replace the first `old` by `new` in a file of the projects copy."""
        path = self.projects / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))
