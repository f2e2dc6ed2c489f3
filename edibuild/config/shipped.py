"""Where edibuild's shipped projects and plugins are: the checkout's, or the installed ones.

In a checkout (and an editable install) they are the checkout's `projects/`; a wheel
carries the same folder as the package data `edibuild/_projects/` (pyproject.toml maps
it), so a project repository of the user's own finds `common/debian.yml` and the
playbooks wherever edibuild was installed.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the edibuild package
CHECKOUT_PROJECTS = PACKAGE.parent / "projects"
INSTALLED_PROJECTS = PACKAGE / "_projects"
MARKER = Path("common") / "debian.yml"  # a file every shipped tree has


def directory() -> Path:
    """The folder of the shipped projects (`common/`, `plugins/`, the shipped projects)."""
    for candidate in (CHECKOUT_PROJECTS, INSTALLED_PROJECTS):
        if (candidate / MARKER).is_file():
            return candidate
    return CHECKOUT_PROJECTS
