"""Debian's /etc/passwd and /etc/group, read from their text (an image's or a container's)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Account:
    """One /etc/passwd line: name, uid, primary gid, home."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class Group:
    """One /etc/group line: name and gid."""

    name: str
    gid: int


def accounts(passwd: str) -> list[Account]:
    """The entries of an /etc/passwd text."""
    found = []
    for line in passwd.splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].isdigit() and parts[3].isdigit():
            found.append(Account(parts[0], int(parts[2]), int(parts[3]), parts[5]))
    return found


def groups(group: str) -> list[Group]:
    """The entries of an /etc/group text."""
    found = []
    for line in group.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            found.append(Group(parts[0], int(parts[2])))
    return found


def find_account(passwd: str, user: str) -> Account | None:
    """The account `user` in an /etc/passwd text, or None."""
    return next((a for a in accounts(passwd) if a.name == user), None)
