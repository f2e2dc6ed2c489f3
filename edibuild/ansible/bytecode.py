"""The build container's bytecode cache for Ansible's modules (see zipcache_site.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edibuild.lxd.protocol import Instance

# A tmpfs in a booted container: the cache never reaches a layer or the image, and every
# boot (after a saved layer too) starts it afresh.
SITE_DIR = "/run/edibuild-pyc"
# What the connection adds to every command's environment.
ENVIRONMENT = {"PYTHONPATH": SITE_DIR}


def site_source() -> bytes:
    """The sitecustomize module that installs the cache (edibuild/ansible/zipcache_site.py)."""
    return Path(__file__).with_name("zipcache_site.py").read_bytes()


def install(box: Instance) -> None:
    """Put the cache's sitecustomize into the (running) container."""
    box.check(["mkdir", "-p", "-m", "0755", SITE_DIR], "making the bytecode cache folder")
    box.push(f"{SITE_DIR}/sitecustomize.py", site_source(), mode=0o644, uid=0, gid=0)


def cached_sources(box: Instance) -> int:
    """How many compiled sources the cache holds now (for the manifest: did it work?)."""
    code, out, _ = box.execute(["find", f"{SITE_DIR}/cache", "-type", "f"])
    return len(out.splitlines()) if code == 0 else 0
