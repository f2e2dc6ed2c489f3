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
all in boottest.json (edibuild/image/sshlogin.py, edibuild/image/ssh.py).

What qemu loads with -kernel is read by edibuild/image/bootfiles.py; qemu's command line
and the boot up to the marker are edibuild/image/bootvm.py's.

The VM runs on a throw-away copy or snapshot of the image (the image users flash is
never changed), without network unless ssh is on, and is killed as soon as the test
is done, on failure and on interrupt; `timeout` bounds the whole test, and the VM even
if edibuild itself is killed. A boot that does not reach the marker raises StageFailed
with the end of the console.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.image.boottest import BootTest, machine_of, ssh_on, ssh_user
from edibuild.lazy import lazy_import

if TYPE_CHECKING:
    from edibuild.image import bootfiles, bootvm, sshlogin, vm
    from edibuild.image.bootfiles import BootFiles
else:  # loaded when a boot runs, not at every doit start
    bootfiles = lazy_import("edibuild.image.bootfiles")
    bootvm = lazy_import("edibuild.image.bootvm")
    sshlogin = lazy_import("edibuild.image.sshlogin")
    vm = lazy_import("edibuild.image.vm")


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


def boots_from_disk(project: Project) -> bool:
    """Whether the image boots from its own boot loader (UEFI firmware finds GRUB)."""
    return project.bootloader is not None and project.bootstrap.architecture == "amd64"


def build(ctx: StageContext) -> Json:
    """Boot the image in qemu; record how long it took to reach the marker (and ssh)."""
    test = settings_of(ctx.project)
    arch = ctx.project.bootstrap.architecture
    from_disk = boots_from_disk(ctx.project)
    with_ssh = ssh_on(test, from_disk)
    started = time.monotonic()
    deadline = started + test.timeout
    disk = bootvm.disk_copy(ctx) if from_disk or with_ssh else None
    access = sshlogin.prepare_ssh(ctx, test, disk) if with_ssh and disk is not None else None
    port = access.target.port if access is not None else None
    files: BootFiles | None = None
    if from_disk:
        assert disk is not None
        argv = bootvm.uefi_command(ctx, test, disk, port)
    else:
        files = bootfiles.boot_files(ctx, test)
        argv = bootvm.qemu_command(ctx, test, files, disk, port)
    logged_in: Json = None
    with bootvm.booted(ctx, test, argv, deadline) as (machine, seconds):
        seconds += machine.started - started  # the copy and the key count too
        if access is not None:
            logged_in = sshlogin.check_ssh(ctx, test, access, started, deadline)
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
                      kernel=system.get("kernel") or bootfiles.newest_kernel(ctx),
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
    qemu = bootvm.QEMU.get(project.bootstrap.architecture, bootvm.QEMU["amd64"])
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
