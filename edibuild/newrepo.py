"""`edibuild init DIR`: a project repository of the user's own, like edi-pi is for edi.

The repository holds only what is the user's: a tiny dodo.py, projects/ (a sample
project that includes edibuild's shipped common files), ssh_pub_keys/ and a .gitignore
for what builds write. edibuild itself (stages, shipped playbooks) comes from the
installed package, so `cd DIR && doit image:NAME` works wherever edibuild is installed.
"""

from __future__ import annotations

import re
from pathlib import Path

from edibuild.errors import EdibuildError

SAMPLE = "vm-bookworm-amd64"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

DODO = '''\
"""doit entry point of this edibuild project repository: the projects in projects/."""

from edibuild.dodo import load

DOIT_CONFIG, _tasks = load()
globals().update(_tasks)
'''

PROJECT = """\
# {name}: a Debian bookworm image for a qemu amd64 VM, from edibuild's shipped files.
# Edit it, copy it, or include other shipped files (common/raspberry-pi.yml with the
# parameters board: pi3, architecture: arm64). `doit config:{name}` shows the result.
description: My Debian bookworm image for a qemu amd64 VM
parameters:
  architecture: amd64
  suite: bookworm
  hostname: {name}
  # mirror: http://deb.debian.org/debian
include:
  - common/debian.yml
  - common/qemu-vm.yml
"""

GITIGNORE = """\
# What edibuild writes: the artifacts, doit's state and the cache.
/artifacts/
/.edibuild/
"""

KEYS_README = """\
Put ssh public keys (*.pub) here: the images' default user `edi` has no password and
logs in with these keys only.
"""

README = """\
# {name}

An edibuild project repository. With edibuild installed (`pip install edibuild`, or
its checkout's `./edibuild.sh`):

    doit list                   # stages, commands and these projects
    doit image:{sample}     # build the sample image
    doit why:{sample}       # what a build would run, and why

Projects are `projects/NAME.yml`; `include:` finds a file beside the project first,
then in edibuild's shipped projects (common/debian.yml, common/qemu-vm.yml, the
playbooks under plugins/). Artifacts land in artifacts/NAME/.
"""


def files(name: str) -> dict[str, str]:
    """The files of a new repository, by path relative to it."""
    return {
        "dodo.py": DODO,
        f"projects/{SAMPLE}.yml": PROJECT.format(name=SAMPLE),
        "projects/ssh_pub_keys/README": KEYS_README,
        ".gitignore": GITIGNORE,
        "README.md": README.format(name=name, sample=SAMPLE),
    }


def init(target: Path) -> list[Path]:
    """Write a new project repository at `target` (missing or empty); return its files."""
    if not NAME.match(target.resolve().name):
        raise EdibuildError(
            f"{target.resolve().name!r} is not a usable repository name",
            hint="letters, digits, '.', '_' and '-', not starting with a dot or dash",
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise EdibuildError(
            f"{target} exists and is not an empty folder",
            hint="give a new folder: edibuild init my-images",
        )
    written = []
    for rel, text in files(target.resolve().name).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
