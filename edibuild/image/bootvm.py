"""The boot test's qemu: its command line, and the boot up to the console marker or why not."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from edibuild.engine.stage import StageContext, Tool
from edibuild.errors import CommandFailed, StageFailed
from edibuild.image import vm
from edibuild.image.bootfiles import BootFiles
from edibuild.image.boottest import RASPI_MEMORY, BootTest, machine_of

CONSOLE_TAIL = 30
QEMU: Mapping[str, Tool] = {
    "amd64": Tool("qemu-system-x86_64", "qemu-system-x86"),
    "arm64": Tool("qemu-system-aarch64", "qemu-system-arm"),
}


def sd_card(ctx: StageContext) -> Path:
    """A sparse copy of the disk image grown to a power of two (qemu's SD card rule)."""
    card = ctx.scratch("sd-card.img")
    ctx.run(["cp", "--sparse=always", ctx.input("disk", "image"), card])
    size = card.stat().st_size
    os.truncate(card, 1 << max(size - 1, 1).bit_length())
    return card


def serial_ports(machine: str, console: Path) -> list[str]:
    """qemu's serial ports: the console into a file (on raspi3b the second, the mini UART)."""
    ports = ["null", f"file:{console}"] if machine == "raspi3b" else [f"file:{console}"]
    return [arg for port in ports for arg in ("-serial", port)]


def disk_copy(ctx: StageContext) -> Path:
    """A sparse copy of the disk image to boot (and write the test key into)."""
    copy = ctx.scratch("disk.img")
    ctx.run(["cp", "--sparse=always", ctx.input("disk", "image"), copy])
    return copy


def qemu_command(
    ctx: StageContext,
    test: BootTest,
    files: BootFiles,
    disk: Path | None = None,
    ssh_port: int | None = None,
) -> list[str]:
    """The qemu command line of a -kernel boot: TCG, serial console to a file, the image
    as a snapshot (or `disk`, a copy), no network unless `ssh_port`."""
    arch = ctx.project.bootstrap.architecture
    machine = machine_of(test, arch)
    common = [
        QEMU[arch].command, "-machine", machine, "-accel", "tcg", "-nodefaults",
        "-no-reboot", "-display", "none", *vm.user_network(ssh_port),
        *serial_ports(machine, ctx.scratch("console.log")),
        "-pidfile", str(ctx.scratch("qemu.pid")),
        "-kernel", str(files.kernel), "-initrd", str(files.initrd),
        "-append", f"{files.cmdline} {test.append}".strip(),
    ]  # fmt: skip
    if machine == "raspi3b":
        assert files.dtb is not None
        return vm.bounded([*common, "-m", f"{RASPI_MEMORY}M", "-dtb", str(files.dtb),
                           "-drive", f"file={sd_card(ctx)},format=raw,if=sd"],
                          test.timeout + 30)  # fmt: skip
    if disk is None:
        drive = f"file={ctx.input('disk', 'image')},format=raw,if=virtio,snapshot=on"
    else:
        drive = f"file={disk},format=raw,if=virtio"
    cpu = ["-cpu", "cortex-a53"] if machine == "virt" else []
    return vm.bounded([*common, *cpu, "-smp", "2", "-m", str(test.memory), "-drive", drive],
                      test.timeout + 30)  # fmt: skip


def uefi_command(ctx: StageContext, test: BootTest, disk: Path, ssh_port: int | None) -> list[str]:
    """The qemu command line of a boot from the disk through OVMF, as a PC boots its drive."""
    if not vm.OVMF.is_file():
        raise StageFailed(f"the UEFI firmware {vm.OVMF} is missing",
                          hint=f"install it with: apt-get install {vm.OVMF_PACKAGE}")  # fmt: skip
    argv = vm.uefi_disk_argv(
        QEMU["amd64"].command, disk, memory=test.memory, console=ctx.scratch("console.log"),
        pidfile=ctx.scratch("qemu.pid"), ssh_port=ssh_port,
    )  # fmt: skip
    return vm.bounded(argv, test.timeout + 30)


@contextlib.contextmanager
def booted(
    ctx: StageContext, test: BootTest, argv: list[str], deadline: float | None = None
) -> Iterator[tuple[vm.VirtualMachine, float]]:
    """Run the VM until the marker appears and yield it with the seconds it took; stop it
    when the block ends. StageFailed when the marker does not show in time."""
    console, pidfile = ctx.scratch("console.log"), ctx.scratch("qemu.pid")
    machine = vm.VirtualMachine(argv, console, pidfile, ctx.log, env={"TMPDIR": str(ctx.workdir)})
    end = deadline if deadline is not None else time.monotonic() + test.timeout
    with machine.start():
        seconds = machine.wait_console(test.expect, end)
        if seconds is None:
            stopped_by_itself = list(machine.ended)  # before stop: what qemu did on its own
            machine.stop()
            for outcome in stopped_by_itself:
                if isinstance(outcome, CommandFailed):  # qemu missing, or it could not start
                    raise StageFailed(f"qemu could not be started: {outcome}")
                if outcome != 0:
                    raise StageFailed(
                        f"qemu exited with code {outcome} before {test.expect!r} showed on "
                        "the console",
                        hint=f"qemu's own messages are at the end of {ctx.log}",
                    )
            raise _failed(test, console, machine.elapsed(), ctx.log)
        yield machine, seconds


def boot(ctx: StageContext, test: BootTest, argv: list[str]) -> float:
    """Run the VM until the marker appears; return the seconds it took, or raise StageFailed."""
    with booted(ctx, test, argv) as (_, seconds):
        return seconds


def _failed(test: BootTest, console: Path, seconds: float, log: Path) -> StageFailed:
    text = console.read_bytes().decode("utf-8", "replace") if console.exists() else ""
    # The console lives in scratch space, which goes away with the failed build: keep a copy
    # next to the stage log, where the hint sends the user.
    kept = log.with_name(f"{log.stem}-console.log")
    kept.write_text(text)
    tail = "\n".join(text.replace("\r", "").splitlines()[-CONSOLE_TAIL:])
    why = f"within {test.timeout} s" if seconds >= test.timeout else "(the VM stopped)"
    return StageFailed(
        f"the image did not show {test.expect!r} on its console {why}; "
        f"last {CONSOLE_TAIL} lines:\n{tail}",
        hint=f"raise boottest.timeout if the boot was merely slow; the whole console is in {kept}",
    )
