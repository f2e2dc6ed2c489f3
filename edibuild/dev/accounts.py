"""The developer's account inside the dev container, planned from its /etc/passwd and /etc/group.

The container's user must have the host's name, uid and gid (the workspace is mapped id
for id). The image may hold another account on that uid: the shipped images' default
user `edi` takes the first free uid, 1000, which is also the most common uid of a
developer. Such an account (a regular one, uid >= 1000) moves to a free id, its private
group and its files with it; a system account in the way (uid < 1000) is an error, never
moved. The plan is a list of argv commands, run as root in the container in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from edibuild.dev.identity import Identity
from edibuild.errors import StageFailed
from edibuild.passwd import Account, Group, accounts, groups

FIRST_REGULAR = 1000  # Debian's FIRST_UID / FIRST_GID
LAST_REGULAR = 59999
SHELL = "/bin/bash"
PASSWORD = "*"  # matches no password, yet is not "locked": key logins and sudo work
Argv = list[str]


def free_id(taken: Iterable[int]) -> int:
    """The first regular id not in `taken`."""
    used = set(taken)
    for ident in range(FIRST_REGULAR, LAST_REGULAR + 1):
        if ident not in used:
            return ident
    raise StageFailed("no free regular id left in the container (1000-59999 all taken)")


def _refuse(what: str) -> StageFailed:
    return StageFailed(
        f"{what}, a system account of the container: it cannot be moved",
        hint="set `container: {user: NAME}` to another user, or leave that account out of "
        "the project's playbooks",
    )


def plan(passwd: str, group: str, who: Identity) -> list[Argv]:
    """The commands that give the container the developer's account (none if it has it)."""
    users, grps = accounts(passwd), groups(group)
    commands: list[Argv] = []
    uids = {a.uid for a in users} | {who.uid}
    gids = {g.gid for g in grps} | {who.gid}
    in_way = next((a for a in users if a.uid == who.uid and a.name != who.name), None)
    if in_way is not None:
        if in_way.uid < FIRST_REGULAR:
            raise _refuse(f"uid {who.uid} belongs to {in_way.name!r}")
        new_uid = free_id(uids)
        uids.add(new_uid)
        commands.append(["usermod", "-u", str(new_uid), in_way.name])  # chowns its home
    gid_in_way = next((g for g in grps if g.gid == who.gid and g.name != who.group), None)
    group_argv = _group_plan(grps, who, gid_in_way, users, gids)
    commands += group_argv
    same = next((a for a in users if a.name == who.name), None)
    if same is None:
        commands.append(["mkdir", "-p", str(PurePosixPath(who.home).parent)])
        commands.append(_useradd(who))
    else:
        if same.uid != who.uid and same.uid < FIRST_REGULAR:
            raise _refuse(f"the name {who.name!r} belongs to uid {same.uid}")
        commands.append(
            ["usermod", "-u", str(who.uid), "-g", str(who.gid), "-d", who.home,
             "-s", SHELL, "-p", PASSWORD, who.name]
        )  # fmt: skip
        commands.append(["mkdir", "-p", who.home])
        commands.append(["chown", f"{who.uid}:{who.gid}", who.home])
    return commands


def _group_plan(
    grps: Sequence[Group],
    who: Identity,
    gid_in_way: Group | None,
    users: Sequence[Account],
    gids: set[int],
) -> list[Argv]:
    """Commands that give the container a group `who.group` with gid `who.gid`.

    A regular group in the way (the moved account's private group) moves to a free gid,
    and the files of its members' homes follow it; a system group on that gid is used as
    it is (the user's primary group then has the container's name for that gid).
    """
    commands: list[Argv] = []
    if gid_in_way is not None:
        if gid_in_way.gid < FIRST_REGULAR:
            return commands  # e.g. gid 100 `users`: share it, whatever its name here
        new_gid = free_id(gids)
        gids.add(new_gid)
        commands.append(["groupmod", "-g", str(new_gid), gid_in_way.name])
        for member in users:
            if member.gid == gid_in_way.gid and member.home.startswith("/home/"):
                commands.append(
                    ["find", member.home, "-xdev", "-gid", str(gid_in_way.gid),
                     "-exec", "chgrp", "-h", str(new_gid), "{}", "+"]
                )  # fmt: skip
    named = next((g for g in grps if g.name == who.group), None)
    if named is None:
        commands.append(["groupadd", "-g", str(who.gid), who.group])
    elif named.gid != who.gid:
        commands.append(["groupmod", "-g", str(who.gid), who.group])
    return commands


def _useradd(who: Identity) -> Argv:
    return [
        "useradd", "--uid", str(who.uid), "--gid", str(who.gid), "--home-dir", who.home,
        "--create-home", "--shell", SHELL, "--password", PASSWORD, who.name,
    ]  # fmt: skip


def sudoers(who: Identity) -> bytes:
    """The sudoers drop-in that lets the developer use sudo without a password (it has none)."""
    return f"{who.name} ALL=(ALL:ALL) NOPASSWD: ALL\n".encode()
