"""Who the developer is on the host: the user the dev container gets, its workspace, its keys.

The user is `container.user`, else SUDO_USER (the person behind `sudo doit ...`); root
only when the project names it. Name, uid, gid, group and home come from the host's
account database, so the container's user is the same person: the workspace shared
between them belongs to that uid on both sides.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edibuild.errors import EdibuildError
from edibuild.lxd.settings import ContainerSettings

# The host's public keys authorized in the container: ~USER/.ssh/*.pub, bounded.
MAX_KEY_FILES = 32
MAX_KEY_BYTES = 64 * 1024
USER_HINT = (
    "run the build with sudo as yourself (sudo doit container:NAME), or name the user in "
    "the project: `container: {user: NAME}` (`user: root` for root itself)"
)


class NoDeveloper(EdibuildError):
    """The dev container's user cannot be determined (or does not exist on this host)."""


@dataclass(frozen=True)
class Identity:
    """A host user as the dev container gets it: name, ids, primary group and home."""

    name: str
    uid: int
    gid: int
    group: str
    home: str

    @property
    def is_root(self) -> bool:
        """True for root (no id can be mapped: the container stays unprivileged)."""
        return self.uid == 0

    def as_json(self) -> dict[str, str | int]:
        """The identity as configuration data (part of the container stage's inputs)."""
        return {
            "name": self.name,
            "uid": self.uid,
            "gid": self.gid,
            "group": self.group,
            "home": self.home,
        }


def user_name(settings: ContainerSettings, env: Mapping[str, str]) -> str:
    """The developer's name: `container.user`, else SUDO_USER; NoDeveloper without one."""
    if settings.user is not None:
        return settings.user
    name = env.get("SUDO_USER", "")
    if not name:
        raise NoDeveloper("no developer user for the dev container (SUDO_USER is not set)",
                          hint=USER_HINT)  # fmt: skip
    if name == "root":
        raise NoDeveloper(
            "SUDO_USER is root: the dev container's user would be root",
            hint="run sudo from your own account, or set `container: {user: root}` if root "
            "is really meant",
        )
    return name


def developer(settings: ContainerSettings, env: Mapping[str, str] | None = None) -> Identity:
    """The developer's host account (NoDeveloper when unknown or missing)."""
    name = user_name(settings, os.environ if env is None else env)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NoDeveloper(f"user {name!r} does not exist on this host", hint=USER_HINT) from None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = name
    home = entry.pw_dir
    if not PurePosixPath(home).is_absolute() or home == "/":
        raise NoDeveloper(
            f"user {name!r} has no home folder of its own ({home!r})",
            hint="give the user a home (usermod -d /home/NAME -m NAME), or set "
            "`container: {workspace: /absolute/path}`",
        )
    return Identity(name, entry.pw_uid, entry.pw_gid, group, os.path.normpath(home))


def workspace(settings: ContainerSettings, who: Identity) -> str:
    """The workspace folder: `~/...` below the developer's home, or the absolute path."""
    path = settings.workspace
    if path.startswith("~/"):
        return str(PurePosixPath(who.home) / path[2:])
    return os.path.normpath(path)


def public_keys(who: Identity) -> tuple[Path, ...]:
    """The developer's public keys: regular files ~/.ssh/*.pub, small, at most 32 of them.

    Anything else there (a FIFO, a folder, a huge file) is left out: these files are read
    when planning, and a stray entry must not stop every doit command.
    """
    folder = Path(who.home) / ".ssh"
    try:
        candidates = sorted(folder.glob("*.pub"))
    except OSError:
        return ()
    found = []
    for path in candidates:
        try:
            info = path.stat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_KEY_BYTES:
            found.append(path)
    return tuple(found[:MAX_KEY_FILES])


def authorized_keys(files: tuple[Path, ...]) -> bytes:
    """The authorized_keys text made of key files (one key per line, comments dropped)."""
    lines: list[str] = []
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and line not in lines:
                lines.append(line)
    return "".join(f"{line}\n" for line in lines).encode()
