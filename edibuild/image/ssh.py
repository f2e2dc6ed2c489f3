"""Log in to a booted test VM over ssh, as a user of the image would, and check its sshd.

The client runs with nothing of the caller's: no ssh config (`-F /dev/null`), no agent,
only the test's throwaway key, and a known_hosts file of its own (the host key the VM
offers on first contact is recorded there: `accept-new`). Checks:

- a command runs as the default user with the key (`run`);
- a password login is refused: the server offers no password method (`password_login`);
- the host keys were made on this boot (`host_key_facts`): the key the client saw is the
  one in /etc/ssh, written after the kernel started.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edibuild import run as runner
from edibuild.data import Json

CONNECT_TIMEOUT = 10
RETRY_SECONDS = 2.0
AUTH_METHODS = re.compile(r"Authentications that can continue: ([\w,-]+)")
FINGERPRINT = re.compile(r"^\d+ (SHA256:\S+) .*\((\w+)\)$")
# Printed in the VM by HOST_KEY_SCRIPT: one `name=value` per line.
HOST_KEY_SCRIPT = (
    "echo boot_id=$(cat /proc/sys/kernel/random/boot_id); "
    "echo btime=$(awk '/^btime/ {print $2}' /proc/stat); "
    "echo key_mtime=$(stat -c %Y /etc/ssh/ssh_host_ed25519_key.pub); "
    "echo key=$(ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2)"
)


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to log in: 127.0.0.1:port, the user, the key, a known_hosts file."""

    port: int
    user: str
    key: Path
    known_hosts: Path
    host: str = "127.0.0.1"

    def _options(self, port_flag: str = "-p") -> list[str]:
        return [
            "-F", "/dev/null", port_flag, str(self.port),
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=accept-new", "-o", "UpdateHostKeys=no",
            "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "IdentityAgent=none",
        ]  # fmt: skip

    def argv(self, command: str) -> list[str]:
        """ssh running `command` (a line for the remote shell) with the key only."""
        return ["ssh", *self._options(), "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                "-o", "LogLevel=ERROR", f"{self.user}@{self.host}", command]  # fmt: skip

    def scp_argv(self, local: Path, remote: str) -> list[str]:
        """scp copying a local file to `remote` (a path in the VM) over the same login."""
        return ["scp", *self._options("-P"), "-q", "-i", str(self.key),
                "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", str(local),
                f"{self.user}@{self.host}:{remote}"]  # fmt: skip

    def password_argv(self) -> list[str]:
        """ssh trying only password and keyboard-interactive logins (verbose: the methods
        the server offers are in its messages); BatchMode answers no prompt."""
        return ["ssh", *self._options(), "-v", "-o", "PubkeyAuthentication=no",
                "-o", "PreferredAuthentications=password,keyboard-interactive",
                f"{self.user}@{self.host}", "true"]  # fmt: skip


@dataclass(frozen=True)
class Result:
    """What a command printed and how it ended."""

    returncode: int
    stdout: str
    stderr: str


def run(target: SshTarget, command: str | Sequence[str], *, timeout: float = 600,
        input: bytes | None = None, log: Path | None = None) -> Result:  # fmt: skip
    """Run a command in the VM (a list is quoted for the remote shell); never raises on
    a failing command, only when ssh cannot be started."""
    line = command if isinstance(command, str) else shlex.join(command)
    proc = runner.run(target.argv(line), capture=True, check=False, timeout=timeout,
                      input=input)  # fmt: skip
    result = Result(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                    (proc.stderr or b"").decode("utf-8", "replace"))  # fmt: skip
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ ssh {target.user}@{target.host}:{target.port} {line}\n"
                    f"{result.stdout}{result.stderr}# exit {result.returncode}\n")  # fmt: skip
    return result


def copy_in(target: SshTarget, local: Path, remote: str, *, timeout: float = 600) -> None:
    """Copy a file into the VM (CommandFailed when scp fails)."""
    runner.run(target.scp_argv(local, remote), capture=True, timeout=timeout)


def wait_for_login(target: SshTarget, deadline: float, log: Path | None = None) -> int | None:
    """Try `true` over ssh until it works (qemu accepts the port before sshd listens);
    the number of tries it took, or None when the deadline passed."""
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        left = max(1.0, deadline - time.monotonic())
        if run(target, "true", timeout=min(60.0, left + 5)).returncode == 0:
            if log is not None:
                with log.open("a") as f:
                    f.write(f"# ssh login worked at try {tries}\n")
            return tries
        time.sleep(RETRY_SECONDS)
    return None


def offered_methods(stderr: str) -> list[str]:
    """The authentication methods the server offered, from `ssh -v` output."""
    found = AUTH_METHODS.findall(stderr)
    return found[-1].split(",") if found else []


def password_login(target: SshTarget, log: Path | None = None) -> dict[str, Json]:
    """Try a password login; `refused` when ssh failed and the server offered no password
    or keyboard-interactive method."""
    proc = runner.run(target.password_argv(), capture=True, check=False, timeout=60)
    stderr = (proc.stderr or b"").decode("utf-8", "replace")
    methods = offered_methods(stderr)
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {runner.command_line(target.password_argv())}\n{stderr}"
                    f"# exit {proc.returncode}\n")  # fmt: skip
    denied = "Permission denied" in stderr
    no_password = bool(methods) and not {"password", "keyboard-interactive"} & set(methods)
    return {"refused": proc.returncode != 0 and denied and no_password,
            "exit_code": proc.returncode, "methods_offered": methods}  # fmt: skip


def fingerprints(known_hosts: Path) -> dict[str, str]:
    """Key type -> SHA256 fingerprint of the host keys recorded in a known_hosts file."""
    text = runner.output(["ssh-keygen", "-l", "-f", known_hosts])
    found = {}
    for line in text.splitlines():
        match = FINGERPRINT.match(line.strip())
        if match:
            found[match.group(2)] = match.group(1)
    return found


def parse_facts(text: str) -> dict[str, str]:
    """`name=value` lines as a mapping (the output of HOST_KEY_SCRIPT)."""
    facts = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            facts[name.strip()] = value.strip()
    return facts


def host_key_facts(target: SshTarget, log: Path | None = None) -> dict[str, Json]:
    """Whether the host key the client saw is the VM's ed25519 key, made on this boot."""
    result = run(target, HOST_KEY_SCRIPT, timeout=60, log=log)
    facts = parse_facts(result.stdout)
    seen = fingerprints(target.known_hosts).get("ED25519")
    try:
        made_after_boot = int(facts["key_mtime"]) >= int(facts["btime"])
    except (KeyError, ValueError):
        made_after_boot = False
    return {
        "fingerprint": facts.get("key"),
        "client_saw": seen,
        "same_key": seen is not None and seen == facts.get("key"),
        "key_mtime": facts.get("key_mtime"),
        "boot_time": facts.get("btime"),
        "boot_id": facts.get("boot_id"),
        "made_on_this_boot": made_after_boot,
    }
