"""Stage `boottest`: boot the disk image in qemu (no KVM) and wait for a console marker;
then, for an image that boots from its own boot loader, log in over ssh.

A test of the image, not part of it: `doit boottest:NAME` builds what it needs and boots;
`doit image:NAME` does not boot (a boot costs a minute, a Raspberry Pi's several).

Inputs: `disk`'s image and its partition table, and `partitions`' images (the kernel,
initrd and, for a Raspberry Pi, config.txt, cmdline.txt and the device tree are read
from them with debugfs or mtools). Outputs: `result` = `boottest.json` and `console` =
`boottest-console.log`. Config: the section `boottest: {timeout: 180, expect: "login:",
memory: 1024, append: "", machine: ..., dtb: ..., ssh: ..., user: ...}`
(edibuild/image/boottest.py); the stage is disabled without it. How it boots:

- An image with a boot loader (a `bootloader` section, amd64): as a PC boots its drive,
  with no -kernel: UEFI firmware (OVMF) finds GRUB on the disk's EFI system partition,
  GRUB its grub.cfg, the kernel its root (edibuild/image/vm.py).
- `pc` (amd64) without one: the newest /boot/vmlinuz-* and its initrd, root on virtio.
- `virt` (arm64, the default there): the same on qemu's generic arm64 machine.
- `raspi3b` (arm64): a Raspberry Pi 3 B, booted the way its firmware boots: kernel,
  initramfs and device tree (`dtb`, else config.txt's `device_tree=`, else the 3 B's)
  named by the firmware partition's config.txt, the kernel command line from its
  cmdline.txt as it is, and the disk image as the SD card (a sparse copy grown to a
  power of two, as qemu demands). The console is the board's: the GPIO header's mini
  UART (ttyS1), qemu's second serial port. The PL011 (ttyAMA0, qemu's first) belongs
  to the Bluetooth chip in the device tree, so it has no tty a getty could use.

With ssh (by default for images with a boot loader; never on raspi3b, whose qemu board
has no network that helps: its test is the console), the VM gets qemu's user-mode
network, restricted (the guest reaches nothing outside qemu) on a link-local subnet,
and one forwarded port on the host's 127.0.0.1; the test makes a throwaway key, writes
it into the default user's authorized_keys of the disk copy's root file system
(debugfs: edibuild/image/testkey.py), logs in, runs a command, checks that a password
login is refused and that the host keys were made on this boot (the image has none;
the key the client saw is the VM's, written after the kernel started), and records it
all in boottest.json (edibuild/image/ssh.py).

The VM runs on a throw-away copy or snapshot of the image (the image users flash is
never changed), without network unless ssh is on, and is killed as soon as the test
is done, on failure and on interrupt; `timeout` bounds the whole test, and the VM even
if edibuild itself is killed. A boot that does not reach the marker raises StageFailed
with the end of the console.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from edibuild import run as runner
from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.errors import CommandFailed, StageFailed
from edibuild.image import ssh, testkey, vm
from edibuild.image.boottest import (
    RASPI_DTB,
    RASPI_MEMORY,
    BootTest,
    machine_of,
    ssh_on,
    ssh_user,
)
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


def newest_kernel(ctx: StageContext) -> str:
    """The version of the newest kernel in /boot that has its initrd."""
    part, directory = boot_partition(layout_of(ctx.project))
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
    return versions[-1]


def kernel_and_initrd(ctx: StageContext, layout: Layout) -> tuple[Path, Path, str]:
    """Copy the newest kernel and its initrd out of the image; return both and the version."""
    part, directory = boot_partition(layout)
    image = ctx.input("partitions", part.name)
    version = newest_kernel(ctx)
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


def boots_from_disk(project: Project) -> bool:
    """Whether the image boots from its own boot loader (UEFI firmware finds GRUB)."""
    return project.bootloader is not None and project.bootstrap.architecture == "amd64"


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


def boot_files(ctx: StageContext, test: BootTest) -> BootFiles:
    """What the machine boots: firmware-style for raspi3b, /boot for the others."""
    machine = machine_of(test, ctx.project.bootstrap.architecture)
    return raspi_boot(ctx, test) if machine == "raspi3b" else virtual_boot(ctx, machine)


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


def check_ssh(ctx: StageContext, access: SshAccess, started: float, deadline: float) -> Json:
    """Log in, run a command, try a password, check the host keys; what was seen."""
    target = access.target
    tries = ssh.wait_for_login(target, deadline, ctx.log)
    if tries is None:
        raise StageFailed(
            f"no ssh login as {target.user} on 127.0.0.1:{target.port} within the "
            f"boot test's {settings_of(ctx.project).timeout} s",
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


def build(ctx: StageContext) -> Json:
    """Boot the image in qemu; record how long it took to reach the marker (and ssh)."""
    test = settings_of(ctx.project)
    arch = ctx.project.bootstrap.architecture
    from_disk = boots_from_disk(ctx.project)
    with_ssh = ssh_on(test, from_disk)
    started = time.monotonic()
    deadline = started + test.timeout
    disk = disk_copy(ctx) if from_disk or with_ssh else None
    access = prepare_ssh(ctx, test, disk) if with_ssh and disk is not None else None
    port = access.target.port if access is not None else None
    files: BootFiles | None = None
    if from_disk:
        assert disk is not None
        argv = uefi_command(ctx, test, disk, port)
    else:
        files = boot_files(ctx, test)
        argv = qemu_command(ctx, test, files, disk, port)
    logged_in: Json = None
    with booted(ctx, test, argv, deadline) as (machine, seconds):
        seconds += machine.started - started  # the copy and the key count too
        if access is not None:
            logged_in = check_ssh(ctx, access, started, deadline)
    ctx.output("console").parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.scratch("console.log"), ctx.output("console"))
    result: dict[str, Json] = {
        "booted": True, "expect": test.expect, "seconds": round(seconds, 1),
        "accelerator": "tcg", "machine": machine_of(test, arch),
    }  # fmt: skip
    if files is not None:
        result.update(kernel=files.version, cmdline=f"{files.cmdline} {test.append}".strip(),
                      boot="kernel")  # fmt: skip
    else:
        system = logged_in.get("system", {}) if isinstance(logged_in, dict) else {}
        assert isinstance(system, dict)
        result.update(boot="uefi-disk", firmware=str(vm.OVMF),
                      kernel=system.get("kernel") or newest_kernel(ctx),
                      cmdline=system.get("cmdline"))  # fmt: skip
    if logged_in is not None:
        result["ssh"] = logged_in
    ctx.output("result").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    if disk is not None:
        disk.unlink()
    return result


def config(project: Project) -> Json:
    """The boot test settings (timeout, marker, memory, extra kernel arguments, machine),
    how it boots (from the disk's boot loader or -kernel) and who logs in over ssh."""
    test = settings_of(project)
    slice_ = {k: v for k, v in vars(test).items() if v is not None and k not in ("ssh", "user")}
    if boots_from_disk(project):
        slice_["boot"] = "uefi-disk"
    if ssh_on(test, boots_from_disk(project)):
        slice_["ssh_user"] = ssh_user(test, project.parameters)
    return slice_


def tools(project: Project) -> tuple[Tool, ...]:
    """qemu for the image's architecture, what reads the partition images, and the ssh
    client when the test logs in."""
    qemu = QEMU.get(project.bootstrap.architecture, QEMU["amd64"])
    needed = [qemu, Tool("timeout", "coreutils"), Tool("cp", "coreutils"),
              Tool("debugfs", "e2fsprogs"), Tool("mcopy", "mtools")]  # fmt: skip
    if ssh_on(settings_of(project), boots_from_disk(project)):
        needed += [Tool("ssh", "openssh-client"), Tool("ssh-keygen", "openssh-client")]
    return tuple(needed)


STAGE = Stage(
    name="boottest",
    doc="Boot the disk image in qemu (no KVM needed) up to a console marker, then ssh in",
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
