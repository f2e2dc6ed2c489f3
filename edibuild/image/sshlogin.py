"""The boot test's ssh login: a throwaway key into the disk copy, then the checks on the VM."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edibuild.data import Json
from edibuild.engine.stage import StageContext
from edibuild.errors import StageFailed
from edibuild.image import ssh, testkey, vm
from edibuild.image.boottest import BootTest, ssh_user
from edibuild.image.layout import layout_of


@dataclass(frozen=True)
class SshAccess:
    """How the test logs in: the target, and which host keys the image had before the boot."""

    target: ssh.SshTarget
    keys_in_image: list[str]


def root_offset(ctx: StageContext) -> int:
    """Where the root file system starts in the disk image (from the disk stage's table)."""
    root = layout_of(ctx.project).root.name
    parts = ctx.info("disk").get("partitions")
    for part in parts if isinstance(parts, (list, tuple)) else []:
        if isinstance(part, Mapping) and part.get("name") == root:
            return int(str(part["start"]))
    raise StageFailed("the disk stage recorded no start of the root partition")


def prepare_ssh(ctx: StageContext, test: BootTest, disk: Path) -> SshAccess:
    """A throwaway key, authorized in the copy's root file system; the image's host keys."""
    key = ctx.scratch("testkey")
    ctx.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edibuild-boottest",
             "-f", key])  # fmt: skip
    offset = root_offset(ctx)
    user = ssh_user(test, ctx.project.parameters)
    testkey.authorize_key(disk, offset, user, key.with_suffix(".pub").read_text(),
                          ctx.workdir, ctx.log)  # fmt: skip
    in_image = [n for n in testkey.list_dir(disk, offset, "/etc/ssh") if n.startswith("ssh_host_")]
    target = ssh.SshTarget(port=vm.free_port(), user=user, key=key,
                           known_hosts=ctx.scratch("known_hosts"))  # fmt: skip
    return SshAccess(target, in_image)


# What the logged-in test asks the system (one `name=value` per line).
SYSTEM_SCRIPT = (
    "echo user=$(id -un); echo kernel=$(uname -r); echo cmdline=$(cat /proc/cmdline); "
    "echo root=$(findmnt -n -o SOURCE /); echo esp=$(findmnt -n -o SOURCE /boot/efi)"
)


def check_ssh(
    ctx: StageContext, test: BootTest, access: SshAccess, started: float, deadline: float
) -> Json:
    """Log in, run a command, try a password, check the host keys; what was seen."""
    target = access.target
    tries = ssh.wait_for_login(target, deadline, ctx.log)
    if tries is None:
        raise StageFailed(
            f"no ssh login as {target.user} on 127.0.0.1:{target.port} within the "
            f"boot test's {test.timeout} s",
            hint=f"the ssh attempts and qemu's messages are in {ctx.log}; is sshd "
            "enabled and the network configured (the network_dhcp playbook)?",
        )
    seconds = time.monotonic() - started
    command = ssh.run(target, SYSTEM_SCRIPT, timeout=60, log=ctx.log)
    system = ssh.parse_facts(command.stdout)
    password = ssh.password_login(target, ctx.log)
    keys = ssh.host_key_facts(target, ctx.log)
    keys["in_image"] = list(access.keys_in_image)
    keys["made_on_this_boot"] = bool(keys["made_on_this_boot"]) and not access.keys_in_image \
        and bool(keys["same_key"])  # fmt: skip
    result: dict[str, Json] = {
        "user": target.user, "login": command.returncode == 0 and system.get("user") == target.user,
        "seconds": round(seconds, 1), "tries": tries, "command": SYSTEM_SCRIPT,
        "system": dict(system), "password_login": password, "host_keys": keys,
        "network": vm.GUEST_NET, "forward": f"{vm.LOOPBACK}:{target.port}",
    }  # fmt: skip
    problems = [what for what, ok in (
        ("the command failed", result["login"]),
        ("a password login was not refused", password["refused"]),
        ("the host keys were not made on this boot", keys["made_on_this_boot"]),
    ) if not ok]  # fmt: skip
    if problems:
        raise StageFailed(f"ssh: {'; '.join(problems)}: {json.dumps(result, indent=1)}",
                          hint=f"the ssh exchanges are in {ctx.log}")  # fmt: skip
    return result
