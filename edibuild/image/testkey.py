"""A throwaway ssh key for a boot test, written into a copy of the disk image with debugfs.

The image users flash stays untouched: the boot test boots a sparse copy, and debugfs
(e2fsprogs, no mount, no loop device) edits the root file system inside it, addressed as
`COPY?offset=BYTES`. The key is appended to the default user's authorized_keys with the
owner, group and mode sshd insists on, read from the image's own /etc/passwd. Only the
root partition named is changed (for an A/B layout: root A, the one that boots first).
debugfs replays no journal: use it on images as they were built (cleanly unmounted).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from edibuild import run as runner
from edibuild.errors import StageFailed
from edibuild.passwd import Account, find_account

STAT_FIELDS = re.compile(r"User:\s+(\d+)\s+Group:\s+(\d+)")
MODE = re.compile(r"Mode:\s+(\d+)")


def _fs(disk: Path, offset: int) -> str:
    return f"{disk}?offset={offset}"


def debugfs(disk: Path, offset: int, command: str) -> str:
    """Run one read-only debugfs command on the file system at `offset`; its output."""
    return runner.output(["debugfs", "-R", command, _fs(disk, offset)])


def list_dir(disk: Path, offset: int, path: str) -> list[str]:
    """The names in a directory of the file system at `offset` (`ls -p` parsed)."""
    text = debugfs(disk, offset, f"ls -p {path}")
    names = [line.split("/")[5] for line in text.splitlines() if line.count("/") >= 6]
    return [n for n in names if n not in (".", "..")]


def key_commands(account: Account, local: Path, existed: bool, had_ssh_dir: bool) -> str:
    """The debugfs script that puts `local` at HOME/.ssh/authorized_keys, owned by the user."""
    ssh_dir = posixpath.join(account.home, ".ssh")
    lines = []
    if not had_ssh_dir:
        lines += [f"mkdir {ssh_dir}", f"sif {ssh_dir} uid {account.uid}",
                  f"sif {ssh_dir} gid {account.gid}", f"sif {ssh_dir} mode 040700"]  # fmt: skip
    lines.append(f"cd {ssh_dir}")
    if existed:
        lines.append("rm authorized_keys")
    lines += [
        f"write {local} authorized_keys",
        f"sif authorized_keys uid {account.uid}",
        f"sif authorized_keys gid {account.gid}",
        "sif authorized_keys mode 0100600",
    ]
    return "\n".join(lines) + "\n"


def authorize_key(disk: Path, offset: int, user: str, public_key: str, scratch: Path,
                  log: Path) -> Account:  # fmt: skip
    """Append `public_key` to `user`'s authorized_keys in the root file system at `offset`."""
    account = find_account(debugfs(disk, offset, "cat /etc/passwd"), user)
    if account is None:
        raise StageFailed(f"the image has no user {user!r} to log in as",
                          hint="set boottest.user, or the default_user_name parameter")  # fmt: skip
    ssh_dir = posixpath.join(account.home, ".ssh")
    home_names = list_dir(disk, offset, account.home)
    had_ssh_dir = ".ssh" in home_names
    existed = had_ssh_dir and "authorized_keys" in list_dir(disk, offset, ssh_dir)
    keys = debugfs(disk, offset, f"cat {ssh_dir}/authorized_keys") + "\n" if existed else ""
    local = scratch / "authorized_keys"
    local.write_text((keys.strip() + "\n" if keys.strip() else "") + public_key.strip() + "\n")
    commands = scratch / "authorize.debugfs"
    commands.write_text(key_commands(account, local, existed, had_ssh_dir))
    runner.run(["debugfs", "-w", "-f", commands, _fs(disk, offset)], log=log)
    stat = debugfs(disk, offset, f"stat {ssh_dir}/authorized_keys")
    owner, mode = STAT_FIELDS.search(stat), MODE.search(stat)
    written = debugfs(disk, offset, f"cat {ssh_dir}/authorized_keys")
    if (
        owner is None
        or (int(owner.group(1)), int(owner.group(2))) != (account.uid, account.gid)
        or mode is None
        or mode.group(1) != "0600"
        or public_key.strip() not in written
    ):
        raise StageFailed(f"could not write the test key into {ssh_dir}/authorized_keys "
                          f"of {disk.name}", hint=f"debugfs said: {stat[-300:]}")  # fmt: skip
    return account
