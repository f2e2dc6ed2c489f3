"""A project repository of the user's own: edibuild installed as a package, `edibuild init`.

edi's users keep their projects in a repository of their own (edi-pi) and install the
tool once. Here edibuild is pip-installed (not editable) into a fresh virtualenv, a
repository is made with `edibuild init` outside the checkout, and doit lists and builds
its sample project there, the shipped plugins coming from the installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require_root, require_tool

pytestmark = pytest.mark.integration
MINIMAL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
NOT_SOURCE = (".git", ".venv", ".edibuild", "artifacts", "build", "*.egg-info", "__pycache__")


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{argv}:\n{out}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with edibuild pip-installed from the checkout (not editable)."""
    home = tmp_path_factory.mktemp("user")
    venv, source = home / "venv", home / "edibuild-source"
    # pip builds a local folder in place (build/, *.egg-info): build a copy, not the checkout.
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    env = {"PATH": MINIMAL_PATH, "HOME": os.environ.get("HOME", "/root")}
    # The checkout's pip cache (filled by its own setup) spares the downloads.
    env["PIP_CACHE_DIR"] = str(REPO / ".edibuild" / "pip-cache")
    _run(["/usr/bin/python3", "-m", "venv", venv], REPO, env)
    _run([venv / "bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
          source], home, env)  # fmt: skip
    return venv


def test_init_writes_a_repository_that_lists_and_builds(
    installed: Path, tmp_path: Path, shared_cache: Path, bookworm_rootfs: Path
) -> None:
    require_root()
    require_tool("mmdebstrap", "lxc")
    env = {
        "PATH": MINIMAL_PATH,
        "HOME": os.environ.get("HOME", "/root"),
        "EDIBUILD_CACHE": str(shared_cache),  # the bootstrap comes back from the cache
    }
    repo = tmp_path / "my-images"
    out = _run([installed / "bin/edibuild", "init", repo], tmp_path, env)
    assert "doit image:vm-bookworm-amd64" in out
    assert {p.name for p in repo.iterdir()} >= {"dodo.py", "projects", ".gitignore"}
    assert (repo / "projects/ssh_pub_keys").is_dir()
    assert "/artifacts/" in (repo / ".gitignore").read_text()
    doit = installed / "bin/doit"
    listing = _run([doit, "list"], repo, env)
    assert "vm-bookworm-amd64" in listing and "My Debian bookworm image" in listing
    plugins = _run([doit, "plugins:vm-bookworm-amd64"], repo, env)
    site = installed / "lib"
    assert str(site) in plugins and "base_system/main.yml" in plugins  # installed package
    assert str(REPO) not in plugins
    try:
        _run([doit, "import:vm-bookworm-amd64"], repo, env)
        arts = repo / "artifacts" / "vm-bookworm-amd64"
        assert (arts / "bootstrap.tar.zst").stat().st_size > 0
        image = json.loads((arts / "lxd-image.json").read_text())
        assert image["fingerprint"]
        assert (repo / ".edibuild" / "state.sqlite3").is_file()  # the repository's own state
        assert not (REPO / "artifacts" / "vm-bookworm-amd64").exists()
    finally:  # the LXD image alias of this project (the image stays if others use it)
        _run([doit, "clean", "import:vm-bookworm-amd64", "--forget"], repo, env)
