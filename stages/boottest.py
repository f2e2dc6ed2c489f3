"""Stage `boottest`: boot the disk image in qemu (no KVM) and wait for a console marker.

A test of the image, not part of it: `doit boottest:NAME` builds what it needs and boots;
`doit image:NAME` does not boot (a boot costs a minute, a Raspberry Pi's several).

Inputs: `disk`'s image, and `partitions`' images (the kernel, initrd and, for a Raspberry
Pi, config.txt, cmdline.txt and the device tree are read from them with debugfs or
mtools). Outputs: `result` = `boottest.json` and `console` = `boottest-console.log`.
Config: the section `boottest: {timeout: 180, expect: "login:", memory: 1024, append: "",
machine: ..., dtb: ...}`; the stage is disabled without it. Machines:

- `pc` (amd64): the newest /boot/vmlinuz-* and its initrd, root on virtio.
- `virt` (arm64, the default there): the same on qemu's generic arm64 machine.
- `raspi3b` (arm64): a Raspberry Pi 3 B, booted the way its firmware boots: kernel,
  initramfs and device tree (`dtb`, else config.txt's `device_tree=`, else the 3 B's)
  named by the firmware partition's config.txt, the kernel command line from its
  cmdline.txt as it is, and the disk image as the SD card (a sparse copy grown to a
  power of two, as qemu demands). The console is the board's: the GPIO header's mini
  UART (ttyS1), qemu's second serial port. The PL011 (ttyAMA0, qemu's first) belongs
  to the Bluetooth chip in the device tree, so it has no tty a getty could use.

The VM runs on a throw-away copy or snapshot of the image, without network, and is
killed as soon as the marker shows up, on failure and on interrupt; `timeout` bounds it
even if edibuild itself is killed. A boot that does not reach the marker raises
StageFailed with the end of the console.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edibuild import run as runner
from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.errors import CommandFailed, StageFailed
from edibuild.image.boottest import RASPI_DTB, RASPI_MEMORY, BootTest, machine_of
from edibuild.image.layout import Layout, Partition, layout_of

CONSOLE_TAIL = 30
KERNEL_RE = re.compile(r"^vmlinuz-(.+)$")
QEMU: Mapping[str, Tool] = {
    "amd64": Tool("qemu-system-x86_64", "qemu-system-x86"),
    "arm64": Tool("qemu-system-aarch64", "qemu-system-arm"),
}
RASPI_FILTERS = ("all", "pi3")  # config.txt sections that apply to a Raspberry Pi 3 B


@dataclass(frozen=True)
class BootFiles:
    """What qemu loads: kernel, initrd, device tree (or None) and the kernel command line."""

    kernel: Path
    initrd: Path
    dtb: Path | None
    cmdline: str
    version: str


def enabled(project: Project) -> bool:
    """Only projects with a `boottest` section are booted."""
    return project.boottest is not None


def settings_of(project: Project) -> BootTest:
    """The project's boot test (the stage runs only when it has one)."""
    assert project.boottest is not None, "the boottest stage runs only with a boottest section"
    return project.boottest


def outputs(project: Project) -> Mapping[str, str]:
    """The verdict and the console of the boot."""
    return {"result": "boottest.json", "console": "boottest-console.log"}


def boot_partition(layout: Layout) -> tuple[Partition, str]:
    """Return the partition holding /boot and the directory of /boot inside it."""
    holders = [
        p for p in layout.partitions if p.content in ("/", "/boot") and p.filesystem != "none"
    ]
    best = max(holders, key=lambda p: len(str(p.content)))
    return best, "/boot" if best.content == "/" else "/"


def _list_dir(image: Path, filesystem: str, directory: str) -> list[str]:
    if filesystem == "ext4":
        text = runner.output(["debugfs", "-R", f"ls -p {directory}", image])
        return [line.split("/")[5] for line in text.splitlines() if line.count("/") >= 6]
    text = runner.output(["mdir", "-b", "-i", image, f"::{directory}"],
                         env={"MTOOLS_SKIP_CHECK": "1"})  # fmt: skip
    return [line.rstrip("/").rsplit("/", 1)[-1] for line in text.splitlines()]


def _extract(ctx: StageContext, image: Path, filesystem: str, source: str, target: Path) -> None:
    if filesystem == "ext4":
        ctx.run(["debugfs", "-R", f"dump {source} {target}", image])
    else:
        ctx.run(["mcopy", "-i", image, f"::{source}", target], env={"MTOOLS_SKIP_CHECK": "1"})
    if not target.is_file() or target.stat().st_size == 0:
        raise StageFailed(f"could not read {source} from {image.name}")


def kernel_and_initrd(ctx: StageContext, layout: Layout) -> tuple[Path, Path, str]:
    """Copy the newest kernel and its initrd out of the image; return both and the version."""
    part, directory = boot_partition(layout)
    image = ctx.input("partitions", part.name)
    names = set(_list_dir(image, part.filesystem, directory))
    versions = sorted(
        (m.group(1) for n in names if (m := KERNEL_RE.match(n)) and f"initrd.img-{m.group(1)}"
         in names),
        key=lambda v: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)],
    )  # fmt: skip
    if not versions:
        raise StageFailed(
            f"no vmlinuz-* with a matching initrd.img-* in /boot of {image.name}",
            hint="install linux-image-amd64 and initramfs-tools in the image",
        )
    version = versions[-1]
    kernel, initrd = ctx.scratch("vmlinuz"), ctx.scratch("initrd.img")
    base = directory.rstrip("/")
    _extract(ctx, image, part.filesystem, f"{base}/vmlinuz-{version}", kernel)
    _extract(ctx, image, part.filesystem, f"{base}/initrd.img-{version}", initrd)
    return kernel, initrd, version


def virtual_boot(ctx: StageContext, machine: str) -> BootFiles:
    """Kernel and initrd from /boot, root on the virtio disk (machines `pc` and `virt`)."""
    kernel, initrd, version = kernel_and_initrd(ctx, layout_of(ctx.project))
    console = "ttyS0" if machine == "pc" else "ttyAMA0"
    root = layout_of(ctx.project).root.number
    cmdline = f"root=/dev/vda{root} rootwait console={console} panic=-1"
    return BootFiles(kernel, initrd, None, cmdline, version)


def firmware_partition(layout: Layout) -> Partition:
    """The vfat partition the Raspberry Pi firmware boots from (the first vfat one)."""
    for part in layout.partitions:
        if part.filesystem == "vfat":
            return part
    raise StageFailed("the layout has no vfat partition for the Raspberry Pi firmware",
                      hint="add one with `content: /boot/firmware`")  # fmt: skip


def parse_config_txt(text: str, filters: tuple[str, ...] = RASPI_FILTERS) -> dict[str, str]:
    """Settings of a Raspberry Pi config.txt that apply to a board (later ones win).

    `initramfs NAME followkernel` becomes {"initramfs": "NAME"}; sections whose filter
    (`[pi4]`) is not one of `filters` are skipped.
    """
    settings: dict[str, str] = {}
    active = True
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            active = line[1:-1].strip() in filters
        elif line and active:
            key, sep, value = line.partition("=")
            if not sep:
                key, _, value = line.partition(" ")
                value = value.split()[0] if value.split() else ""
            settings[key.strip()] = value.strip()
    return settings


def raspi_cmdline(cmdline_txt: str) -> str:
    """cmdline.txt as the board boots it, plus panic=-1 (a failed boot ends the VM)."""
    return " ".join([*cmdline_txt.split(), "panic=-1"])


def raspi_boot(ctx: StageContext, test: BootTest) -> BootFiles:
    """Read config.txt and cmdline.txt like the firmware does and copy out what they name."""
    part = firmware_partition(layout_of(ctx.project))
    image = ctx.input("partitions", part.name)

    def fetch(name: str) -> Path:
        target = ctx.scratch(f"firmware-{name}")
        _extract(ctx, image, part.filesystem, f"/{name}", target)
        return target

    settings = parse_config_txt(fetch("config.txt").read_text(errors="replace"))
    missing = [k for k in ("kernel", "initramfs") if not settings.get(k)]
    if missing:
        raise StageFailed(f"config.txt of {image.name} names no {' and no '.join(missing)}",
                          hint="install raspi-firmware and a kernel in the image")  # fmt: skip
    dtb = test.dtb or settings.get("device_tree") or RASPI_DTB
    kernel, initrd = fetch(settings["kernel"]), fetch(settings["initramfs"])
    cmdline = raspi_cmdline(fetch("cmdline.txt").read_text(errors="replace"))
    match = KERNEL_RE.match(settings["kernel"])
    version = match.group(1) if match else settings["kernel"]
    return BootFiles(kernel, initrd, fetch(dtb), cmdline, version)


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


def qemu_command(ctx: StageContext, test: BootTest, files: BootFiles) -> list[str]:
    """Return the qemu command line: TCG, no network, serial console to a file, a copy."""
    arch = ctx.project.bootstrap.architecture
    machine = machine_of(test, arch)
    common = [
        "timeout", "--kill-after=10", str(test.timeout + 30),  # bounds an orphaned VM
        QEMU[arch].command, "-machine", machine, "-accel", "tcg", "-nodefaults",
        "-no-reboot", "-display", "none", "-nic", "none",
        *serial_ports(machine, ctx.scratch("console.log")),
        "-pidfile", str(ctx.scratch("qemu.pid")),
        "-kernel", str(files.kernel), "-initrd", str(files.initrd),
        "-append", f"{files.cmdline} {test.append}".strip(),
    ]  # fmt: skip
    if machine == "raspi3b":
        assert files.dtb is not None
        return [*common, "-m", f"{RASPI_MEMORY}M", "-dtb", str(files.dtb),
                "-drive", f"file={sd_card(ctx)},format=raw,if=sd"]  # fmt: skip
    disk = f"file={ctx.input('disk', 'image')},format=raw,if=virtio,snapshot=on"
    cpu = ["-cpu", "cortex-a53"] if machine == "virt" else []
    return [*common, *cpu, "-smp", "2", "-m", str(test.memory), "-drive", disk]


def _stop(pidfile: Path) -> None:
    """Terminate the qemu this stage started (checked by its pid file and name)."""
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text()
    except (OSError, ValueError):
        return
    if comm.startswith("qemu"):
        os.kill(pid, signal.SIGTERM)


def _console_has(console: Path, marker: bytes) -> bool:
    try:
        return marker in console.read_bytes()
    except FileNotFoundError:
        return False


def boot(ctx: StageContext, test: BootTest, argv: list[str]) -> float:
    """Run the VM until the marker appears; return the seconds it took, or raise StageFailed."""
    console, pidfile = ctx.scratch("console.log"), ctx.scratch("qemu.pid")
    ended: list[int | CommandFailed] = []  # qemu's exit code, or why it could not start

    def vm() -> None:
        try:
            env = {"TMPDIR": str(ctx.workdir)}
            ended.append(runner.run(argv, log=ctx.log, check=False, env=env).returncode)
        except CommandFailed as exc:
            ended.append(exc)

    thread = threading.Thread(target=vm, name="boottest-qemu", daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        while thread.is_alive() and time.monotonic() - started < test.timeout:
            if _console_has(console, test.expect.encode()):
                return time.monotonic() - started
            thread.join(1.0)
        if _console_has(console, test.expect.encode()):
            return time.monotonic() - started
        stopped_by_itself = list(ended)  # before _stop: what qemu did on its own
    finally:
        _stop(pidfile)
        thread.join(15)
    for outcome in stopped_by_itself:
        if isinstance(outcome, CommandFailed):  # qemu missing, or it could not be started
            raise StageFailed(f"qemu could not be started: {outcome}")
        if outcome != 0:
            raise StageFailed(
                f"qemu exited with code {outcome} before {test.expect!r} showed on the console",
                hint=f"qemu's own messages are at the end of {ctx.log}",
            )
    raise _failed(test, console, time.monotonic() - started, ctx.log)


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


def boot_files(ctx: StageContext, test: BootTest) -> BootFiles:
    """What the machine boots: firmware-style for raspi3b, /boot for the others."""
    machine = machine_of(test, ctx.project.bootstrap.architecture)
    return raspi_boot(ctx, test) if machine == "raspi3b" else virtual_boot(ctx, machine)


def build(ctx: StageContext) -> Json:
    """Boot the image in qemu and record how long it took to reach the marker."""
    test = settings_of(ctx.project)
    files = boot_files(ctx, test)
    seconds = boot(ctx, test, qemu_command(ctx, test, files))
    ctx.output("console").parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.scratch("console.log"), ctx.output("console"))
    result: dict[str, Json] = {"booted": True, "expect": test.expect, "seconds": round(seconds, 1),
              "kernel": files.version, "accelerator": "tcg",
              "machine": machine_of(test, ctx.project.bootstrap.architecture),
              "cmdline": f"{files.cmdline} {test.append}".strip()}  # fmt: skip
    ctx.output("result").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def config(project: Project) -> Json:
    """The boot test settings (timeout, marker, memory, extra kernel arguments, machine)."""
    test = settings_of(project)
    return {key: value for key, value in vars(test).items() if value is not None}


def tools(project: Project) -> tuple[Tool, ...]:
    """qemu for the image's architecture, plus what reads the partition images."""
    qemu = QEMU.get(project.bootstrap.architecture, QEMU["amd64"])
    return (qemu, Tool("timeout", "coreutils"), Tool("cp", "coreutils"),
            Tool("debugfs", "e2fsprogs"), Tool("mcopy", "mtools"))  # fmt: skip


STAGE = Stage(
    name="boottest",
    doc="Boot the disk image in qemu (no KVM needed) up to a console marker",
    upstream=("partitions", "disk"),
    outputs=outputs,
    config=config,
    build=build,
    enabled=enabled,
    tools=tools,
    needs_root=False,
    image_output=True,
    in_image=False,  # a test of the image, not part of it: `doit boottest:NAME`
)  # fmt: skip
