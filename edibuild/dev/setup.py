"""What the container stage does inside a new dev container: name, account, ssh, apt, stop.

Host-specific, so it happens at launch and not in configure (whose output stays the
same for every developer and for CI). Every step runs as root in the container through
the backend's Instance, and fails with the step's name and the command's error.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import PurePosixPath

from edibuild.dev import accounts, packages
from edibuild.dev.identity import Identity
from edibuild.errors import StageFailed
from edibuild.lxd.buildnet import APT_PROXY_CONF
from edibuild.lxd.errors import BackendError
from edibuild.lxd.protocol import Instance

SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-edibuild-dev.conf"
TOOL_DIR = "/usr/local/share/edibuild"
POWEROFF_TIMEOUT = 60.0


def hostname(box: Instance, name: str) -> None:
    """Call the container by its own name (/etc/hostname, /etc/hosts, the running kernel's)."""
    box.push("/etc/hostname", f"{name}\n".encode(), mode=0o644, uid=0, gid=0)
    hosts = (
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
    )
    box.push("/etc/hosts", hosts.encode(), mode=0o644, uid=0, gid=0)
    box.check(["hostname", name], "setting the hostname")


def apt_proxy(box: Instance, listen_port: int) -> None:
    """Point apt at the proxy device's end inside the container (kept while it lives)."""
    conf = f'Acquire::http::Proxy "http://127.0.0.1:{listen_port}";\n'.encode()
    box.push(APT_PROXY_CONF, conf, mode=0o644, uid=0, gid=0)


def account(box: Instance, who: Identity, keys: bytes) -> list[list[str]]:
    """Give the container the developer's account, sudo and keys; return the commands run."""
    if who.is_root:
        authorize(box, who, keys)
        return []
    passwd = box.read("/etc/passwd").decode("utf-8", "replace")
    group = box.read("/etc/group").decode("utf-8", "replace")
    commands = accounts.plan(passwd, group, who)
    for argv in commands:
        box.check(argv, f"making the account {who.name} ({argv[0]})")
    sudoers = f"/etc/sudoers.d/edibuild-dev-{who.name}"
    box.push(sudoers, accounts.sudoers(who), mode=0o440, uid=0, gid=0)
    code, _, err = box.execute(["visudo", "-cf", sudoers])
    if code == 127:  # no sudo in the image: the file is harmless, say it does nothing
        box.delete_file(sudoers)
    elif code != 0:
        raise StageFailed(f"the sudoers file for {who.name} is refused by visudo: {err!r}")
    authorize(box, who, keys)
    return commands


def has_sudo(box: Instance) -> bool:
    """True when sudo is installed in the container."""
    return box.execute(["sh", "-c", "command -v sudo"]).code == 0


def authorize(box: Instance, who: Identity, keys: bytes) -> None:
    """Write the developer's authorized_keys (0600 in a 0700 ~/.ssh, owned by them)."""
    ssh_dir = str(PurePosixPath(who.home) / ".ssh")
    owner = ["-o", str(who.uid), "-g", str(who.gid)]
    box.check(["install", "-d", "-m", "0700", *owner, ssh_dir], "making ~/.ssh")
    box.push(f"{ssh_dir}/authorized_keys", keys, mode=0o600, uid=who.uid, gid=who.gid)


def ssh_server(box: Instance, root: bool) -> None:
    """Keys only: sshd's drop-in, host keys, and the service enabled and (re)started."""
    if box.execute(["test", "-x", "/usr/sbin/sshd"]).code != 0:
        raise StageFailed(
            "the dev container has no ssh server (/usr/sbin/sshd)",
            hint="install openssh-server in a playbook (base_system does), or set "
            "`container: {ssh: false}`",
        )
    lines = [
        "# Written by edibuild's container stage: keys only, no password anyone knows.",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        f"PermitRootLogin {'prohibit-password' if root else 'no'}",
    ]
    box.push(SSHD_DROP_IN, ("\n".join(lines) + "\n").encode(), mode=0o644, uid=0, gid=0)
    box.check(["ssh-keygen", "-A"], "making the ssh host keys")
    box.check(["sshd", "-t"], "checking sshd's configuration")
    box.check(["systemctl", "unmask", "ssh.service"], "unmasking ssh")
    box.check(["systemctl", "enable", "ssh.service"], "enabling ssh")
    box.check(["systemctl", "restart", "ssh.service"], "starting ssh")


def tool_files(box: Instance) -> list[str]:
    """The toolchain files the playbooks installed (CMake toolchain, meson cross file)."""
    code, out, _ = box.execute(["find", TOOL_DIR, "-maxdepth", "1", "-type", "f"])
    return sorted(out.decode().split()) if code == 0 else []


def target_architecture(box: Instance) -> str:
    """The architecture the container builds for: its foreign one (cross), else its own."""
    foreign = box.check(["dpkg", "--print-foreign-architectures"], "asking dpkg").decode()
    if foreign.split():
        return foreign.split()[0]
    return box.check(["dpkg", "--print-architecture"], "asking dpkg").decode().strip()


def installed(box: Instance) -> list[dict[str, str]]:
    """The container's installed packages."""
    out = box.check(["dpkg-query", "-W", "-f", packages.QUERY], "listing the packages")
    return packages.parse_query(out.decode("utf-8", "replace"))


def user_can_write(box: Instance, who: Identity, folder: str) -> bool:
    """True when the developer may write the folder inside (the id map works)."""
    argv = ["su", "-s", "/bin/sh", who.name, "-c", 'test -w "$0"', folder]
    return box.execute(argv).code == 0


def stop_natively(box: Instance) -> None:
    """Stop a native container with LXD's own stop: it returns once LXD's stop hook has
    cleaned up the devices (a container stopped from inside is Stopped before that hook
    ran, and renaming it then breaks the hook: "Instance not found", devices left)."""
    if box.status != "Stopped":
        box.stop()


def stopper(emulated: bool) -> Callable[[Instance], None]:
    """How to stop a dev container: LXD's stop when native, from inside when emulated."""
    return poweroff if emulated else stop_natively


def poweroff(box: Instance, timeout: float = POWEROFF_TIMEOUT) -> None:
    """Stop the container from inside (`systemctl poweroff`), forcing it after `timeout`.

    LXD's own stop sends SIGRTMIN+3 to init; under qemu-user (the emulated container)
    systemd receives another signal and goes to rescue mode instead, so the container
    is asked to power off from inside, which works everywhere.
    """
    if box.status == "Stopped":
        return
    # A second from now, so the exec's own connection ends before the container does.
    later = ["systemd-run", "--quiet", "--on-active=1", "systemctl", "poweroff"]
    with contextlib.suppress(BackendError):  # the exec may end with the container
        if box.execute(later).code != 0:
            box.execute(["systemctl", "poweroff", "--no-block"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if box.status == "Stopped":
            return
        time.sleep(0.5)
    box.stop(timeout=0)
