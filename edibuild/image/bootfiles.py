"""What a boot test's -kernel boot loads, read out of the image as its firmware or /boot has it."""

from __future__ import annotations

import errno
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from edibuild import run as runner
from edibuild.engine.stage import StageContext
from edibuild.errors import StageFailed
from edibuild.image.boottest import RASPI_DTB, BootTest, machine_of
from edibuild.image.layout import Layout, Partition, layout_of

KERNEL_RE = re.compile(r"^vmlinuz-(.+)$")
RASPI_FILTERS = ("all", "pi3")  # config.txt sections that apply to a Raspberry Pi 3 B


@dataclass(frozen=True)
class BootFiles:
    """What qemu loads: kernel, initrd, device tree (or None) and the kernel command line."""

    kernel: Path
    initrd: Path
    dtb: Path | None
    cmdline: str
    version: str


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
        # debugfs exits 0 when its write fails (a full scratch space): compare the sizes.
        _check_whole(target, _ext4_size(image, source), source)
    else:
        ctx.run(["mcopy", "-i", image, f"::{source}", target], env={"MTOOLS_SKIP_CHECK": "1"})
    if not target.is_file() or target.stat().st_size == 0:
        raise StageFailed(f"could not read {source} from {image.name}")


def _ext4_size(image: Path, source: str) -> int | None:
    """The size of a file in an ext4 image, as its inode says (None if debugfs does not)."""
    match = re.search(r"\bSize: (\d+)", runner.output(["debugfs", "-R", f"stat {source}", image]))
    return int(match.group(1)) if match else None


def _check_whole(target: Path, size: int | None, source: str) -> None:
    """A copy shorter than its source is a full disk when no room is left, else a failure."""
    got = target.stat().st_size if target.is_file() else 0
    if size is None or got == size:
        return
    free = shutil.disk_usage(target.parent).free
    if free < size - got + (1 << 20):
        raise OSError(errno.ENOSPC, f"No space left on device: {target} ({got} of {size} bytes)")
    raise StageFailed(f"could read only {got} of the {size} bytes of {source}")


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


def boot_files(ctx: StageContext, test: BootTest) -> BootFiles:
    """What the machine boots: firmware-style for raspi3b, /boot for the others."""
    machine = machine_of(test, ctx.project.bootstrap.architecture)
    return raspi_boot(ctx, test) if machine == "raspi3b" else virtual_boot(ctx, machine)
