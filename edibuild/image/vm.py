"""A qemu virtual machine for tests of an image: its command line, and its life.

Booting from the disk as a user would: UEFI firmware (Debian's OVMF) finds the boot
loader on the disk's EFI system partition; no -kernel. The network, when there is one,
is qemu's user-mode network locked down (`restrict=on`: the guest reaches nothing
outside qemu) on a link-local subnet, with one forwarded port on the host's 127.0.0.1
to the guest's sshd. Without it, `-nic none`: never qemu's default network (a private
range, unrestricted).

A VirtualMachine runs qemu in a thread (through edibuild/run.py, under `timeout` so a
VM outlives neither its bound nor an edibuild killed hard), its serial console into a
file; it is stopped (by its pid file, checked to be a qemu) when its block ends.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from edibuild import interrupt
from edibuild import run as runner
from edibuild.errors import CommandFailed

OVMF = Path("/usr/share/ovmf/OVMF.fd")  # Debian's ovmf: UEFI firmware for x86_64 VMs
OVMF_PACKAGE = "ovmf"
# Link-local (169.254/16): never a private range. qemu's DHCP gives the guest .15.
GUEST_NET = "169.254.100.0/24"
LOOPBACK = "127.0.0.1"
# Below this, Debian's GRUB for EFI fails with "out of memory" when it loads the kernel.
UEFI_MIN_MEMORY = 288


def user_network(port: int | None) -> list[str]:
    """The NIC: none, or restricted user-mode networking forwarding 127.0.0.1:port to :22."""
    if port is None:
        return ["-nic", "none"]
    nic = (f"user,model=virtio-net-pci,restrict=on,net={GUEST_NET},"
           f"hostfwd=tcp:{LOOPBACK}:{port}-:22")  # fmt: skip
    return ["-nic", nic]


def bounded(argv: Sequence[str], seconds: int) -> list[str]:
    """argv under coreutils' timeout: killed after `seconds` (KILL 10 s later) whatever happens."""
    return ["timeout", "--kill-after=10", str(seconds), *argv]


def uefi_disk_argv(
    qemu: str,
    disk: Path,
    *,
    memory: int,
    console: Path,
    pidfile: Path,
    ssh_port: int | None,
    firmware: Path = OVMF,
    smp: int = 2,
) -> list[str]:
    """qemu booting a raw disk image through UEFI firmware, as a PC boots its drive.

    TCG (no KVM needed), no display, the first serial port into `console`, the disk on
    virtio, and `-no-reboot`: a reboot ends qemu (a test starts it again: a cold start
    reaches the boot loader in seconds, OVMF's warm reset under TCG can take a minute).
    """
    if memory < UEFI_MIN_MEMORY:
        raise ValueError(f"UEFI boots with GRUB need at least {UEFI_MIN_MEMORY} MiB, not {memory}")
    return [
        qemu, "-machine", "pc", "-accel", "tcg", "-nodefaults", "-no-reboot",
        "-display", "none", "-serial", f"file:{console}", "-pidfile", str(pidfile),
        "-bios", str(firmware), "-smp", str(smp), "-m", str(memory),
        "-drive", f"file={disk},format=raw,if=virtio",
        *user_network(ssh_port),
    ]  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel picks it), for qemu's hostfwd."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def stop_qemu(pidfile: Path) -> bool:
    """Terminate the qemu whose pid file this is (checked by its name); True if one ran."""
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text()
    except (OSError, ValueError):
        return False
    if not comm.startswith("qemu"):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


class VirtualMachine:
    """One run of qemu: started by `start`, stopped when the `with` block ends."""

    def __init__(self, argv: Sequence[str], console: Path, pidfile: Path, log: Path,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.argv, self.console, self.pidfile, self.log = list(argv), console, pidfile, log
        self.env = env
        self.ended: list[int | CommandFailed] = []  # qemu's exit code, or why it did not start
        self.started = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> VirtualMachine:
        """Start qemu in the background."""

        def vm() -> None:
            try:
                proc = runner.run(self.argv, log=self.log, check=False, env=self.env)
                self.ended.append(proc.returncode)
            except CommandFailed as exc:
                self.ended.append(exc)

        self.console.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)
        self._thread = threading.Thread(target=vm, name="edibuild-qemu", daemon=True)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __enter__(self) -> VirtualMachine:
        return self.start() if self._thread is None else self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()

    @property
    def running(self) -> bool:
        """True while qemu (or its start) is still going."""
        return self._thread is not None and self._thread.is_alive()

    def elapsed(self) -> float:
        """Seconds since qemu was started."""
        return time.monotonic() - self.started

    def console_bytes(self) -> bytes:
        """What the guest wrote to its serial console so far."""
        try:
            return self.console.read_bytes()
        except FileNotFoundError:
            return b""

    def wait_console(self, marker: str, deadline: float) -> float | None:
        """Wait until `marker` shows on the console; its second, or None (timeout, qemu ended)."""
        wanted = marker.encode()
        while True:
            if wanted in self.console_bytes():
                return self.elapsed()
            if not self.running or time.monotonic() >= deadline:
                return self.elapsed() if wanted in self.console_bytes() else None
            assert self._thread is not None
            self._thread.join(0.5)
            interrupt.check()  # an interrupt reaches a worker thread (doit -n 2) here

    def wait_exit(self, deadline: float) -> int | CommandFailed | None:
        """Wait until qemu ends by itself (a reboot with -no-reboot); its outcome, or None."""
        assert self._thread is not None
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(min(0.5, max(0.0, deadline - time.monotonic())))
            interrupt.check()  # an interrupt reaches a worker thread (doit -n 2) here
        return None if self._thread.is_alive() else self.ended[0]

    def stop(self) -> None:
        """Terminate qemu if it still runs, and wait for it."""
        if self._thread is None:
            return
        for _ in range(3):
            if not self._thread.is_alive():  # the pid in the file is ours only while it runs
                break
            stop_qemu(self.pidfile)
            self._thread.join(10)
        self.pidfile.unlink(missing_ok=True)
