"""The software a host needs: Debian packages (apt side) and edibuild's virtualenv (PyPI side).

The setup scripts hash this file together with pyproject.toml, so changing the package
list below makes the next `./edibuild.sh` run the setup again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from edibuild.errors import EdibuildError
from edibuild.run import command_line, run, say

# Every Debian package a build or the test suite needs on the host (bookworm names).
DEBIAN_PACKAGES: tuple[str, ...] = (
    "python3-venv",
    "debootstrap",
    "mmdebstrap",
    "lxd",
    "lxd-client",
    "btrfs-progs",  # edibuild's storage pool for build containers (lxd_service.py)
    "qemu-user-static",
    "binfmt-support",
    "arch-test",
    "e2fsprogs",
    "dosfstools",
    "mtools",
    "fdisk",
    "bmap-tools",
    "mender-artifact",
    "qemu-system-x86",
    "qemu-system-arm",
    "ovmf",
    "openssh-client",  # boottest and the dev container test log in by ssh
    "zstd",
)

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}
VENV = ".venv"
STAMP = f"{VENV}/.edibuild-setup"
DIGEST_INPUTS = ("pyproject.toml", "edibuild/host/packages.py")


def missing_packages(packages: Sequence[str] = DEBIAN_PACKAGES) -> list[str]:
    """Return the packages of `packages` that dpkg does not report as installed."""
    if shutil.which("dpkg-query") is None:
        raise EdibuildError(
            "this host has no dpkg-query: edibuild sets up Debian (12 or newer) hosts only",
            hint=f"install these packages' equivalents by hand: {' '.join(packages)}",
        )
    fmt = "${Package}\t${db:Status-Status}\n"
    proc = run(["dpkg-query", "-W", "-f", fmt, *packages], capture=True, check=False)
    installed = set()
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        name, _, status = line.partition("\t")
        if status == "installed":
            installed.add(name)
    return [p for p in packages if p not in installed]


def install_debian_packages(packages: Sequence[str], *, log: Path) -> list[str]:
    """Install what is missing of `packages` (apt-get update once, then install); return it."""
    missing = missing_packages(packages)
    if not missing:
        return []
    install = ["apt-get", "install", "-y", "-o", "Dpkg::Options::=--force-confold", *missing]
    if os.geteuid() != 0:
        raise EdibuildError(
            f"missing Debian packages (installing them needs root): {' '.join(missing)}",
            hint=f"run as root: apt-get update && {command_line(install)}",
        )
    say(f"installing Debian packages: {' '.join(missing)} (log: {log})")
    update = run(["apt-get", "update"], log=log, env=APT_ENV, check=False)
    if update.returncode != 0:
        say(f"warning: apt-get update failed (see {log}); trying the install anyway")
    run(install, log=log, env=APT_ENV)
    return missing


def setup_digest(repo: Path) -> str:
    """Hash the setup's inputs, like `cat pyproject.toml edibuild/host/packages.py | sha256sum`."""
    digest = hashlib.sha256()
    for name in DIGEST_INPUTS:
        digest.update((repo / name).read_bytes())
    return digest.hexdigest()


def setup_is_current(repo: Path) -> bool:
    """Tell whether the stamp says this repo's setup ran with the current inputs."""
    stamp = repo / STAMP
    try:
        recorded = stamp.read_text().strip()
    except OSError:
        return False
    return recorded == setup_digest(repo) and (repo / VENV / "bin" / "doit").exists()


def write_stamp(repo: Path) -> None:
    """Record that setup finished for the current inputs."""
    (repo / STAMP).write_text(setup_digest(repo) + "\n")


def _venv_works(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    return run([python, "-c", ""], check=False).returncode == 0


def ensure_venv(repo: Path, *, log: Path, python: str = sys.executable) -> None:
    """Create repo/.venv when needed; pip install edibuild into it (editable, dev extras)."""
    venv = repo / VENV
    if venv.exists() and not _venv_works(venv):
        say(f"the virtualenv {venv} is broken: recreating it")
        shutil.rmtree(venv)
    if not venv.exists():
        say(f"creating the virtualenv {venv} ({python} -m venv)")
        run([python, "-m", "venv", venv], log=log)
    say(f"installing edibuild and its Python dependencies: pip install -e '.[dev]' (log: {log})")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    # Keep pip's download cache inside the checkout too, unless the user chose one.
    cache = os.environ.get("PIP_CACHE_DIR") or str(repo / ".edibuild" / "pip-cache")
    run([*pip, "install", "-e", f"{repo}[dev]"], log=log, cwd=repo, env={"PIP_CACHE_DIR": cache})
