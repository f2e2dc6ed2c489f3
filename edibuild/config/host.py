"""Facts about the building host: the built-in Jinja2 variables every project file sees."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from edibuild.data import Json

# `uname -m` -> Debian architecture name.
_DEBIAN_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armhf",
    "armv6l": "armel",
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64el",
}

BUILTIN_PREFIX = "edibuild_"


def debian_architecture(machine: str) -> str:
    """Translate a kernel machine name (x86_64) to its Debian architecture name (amd64)."""
    return _DEBIAN_ARCH.get(machine, machine)


@dataclass(frozen=True)
class Host:
    """The host facts that feed the built-in variables and pick the local overlays."""

    architecture: str
    user: str
    hostname: str

    @classmethod
    def detect(cls) -> Host:
        """Read the facts of the machine we run on (SUDO_USER wins over the login name)."""
        user = os.environ.get("SUDO_USER") or getpass.getuser()
        return cls(debian_architecture(os.uname().machine), user, socket.gethostname())

    def builtins(self, project_file: Path) -> dict[str, Json]:
        """Return the built-in Jinja2 variables for one project file."""
        return {
            "edibuild_project_name": project_file.stem,
            "edibuild_project_dir": str(project_file.parent),
            "edibuild_host_architecture": self.architecture,
            "edibuild_user": self.user,
            "edibuild_hostname": self.hostname,
        }
