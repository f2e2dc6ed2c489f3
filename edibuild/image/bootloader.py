"""The project's `bootloader` section: GRUB on the EFI system partition, and what it boots.

    bootloader: {type: grub-efi, consoles: [tty0, "ttyS0,115200"], append: ""}

`type` is `grub-efi` (the only one yet: GRUB for UEFI firmware, what Mender's x86
integration expects). `consoles` are the kernel's `console=` arguments in order (the
last one is /dev/console; GRUB's own menu and messages go to the screen and, when a
`ttyS` console is listed, to that serial port too); `append` adds kernel arguments.

The image then needs (checked here, at load): a layout with one partition of `type: efi`,
vfat, holding `content: /boot/efi` (the grub_efi playbook puts BOOTX64.EFI there, the
partitions stage writes EFI/BOOT/grub.cfg beside it: edibuild/image/grub.py). A layout
with a second root slot (`copy_of`, edibuild/image/layout.py) is Mender-ready: it needs
this section (GRUB switches between the slots and falls back) and a `mender` section.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from edibuild.config.reader import Reader, Where
from edibuild.errors import ConfigError
from edibuild.image.layout import Layout, Partition
from edibuild.image.mender import MenderSettings

KEYS = ("type", "consoles", "append")
TYPES = ("grub-efi",)
ESP_CONTENT = "/boot/efi"  # where Debian mounts the ESP, and where Mender's commands look
DEFAULT_CONSOLES = ("tty0", "ttyS0,115200")
# tty0, tty1, ttyS0, ttyS0,115200, ttyS1,115200n8, ttyAMA0, hvc0
CONSOLE = re.compile(r"(tty[A-Za-z]*|hvc)(\d+)(?:,(\d+)(?:[noe][5-8]?)?)?")
# What the GRUB script's `linux` line cannot hold unquoted.
APPEND_FORBIDDEN = "\"'\\$;{}&|<>`#"


@dataclass(frozen=True)
class BootLoader:
    """Which boot loader the image carries, and the kernel arguments it boots with."""

    type: str = "grub-efi"
    consoles: tuple[str, ...] = DEFAULT_CONSOLES
    append: str = ""

    def serial(self) -> tuple[int, int] | None:
        """The (unit, speed) of the first serial console, for GRUB's `serial` command."""
        for console in self.consoles:
            match = CONSOLE.fullmatch(console)
            if match and match.group(1) == "ttyS":
                return int(match.group(2)), int(match.group(3) or 115200)
        return None


def parse_bootloader(reader: Reader | None) -> BootLoader | None:
    """Read the `bootloader` section; None when the image has no boot loader of ours."""
    if reader is None:
        return None
    reader.known(KEYS)
    default = BootLoader()
    consoles = reader.texts("consoles", default.consoles, what="console names")
    for console in consoles:
        if CONSOLE.fullmatch(console) is None:
            reader.fail(
                f"{console!r} is not a kernel console",
                hint='write consoles like tty0 or "ttyS0,115200"',
                field="consoles",
            )
    append = ""
    if reader.raw("append"):
        append = reader.text("append", what="kernel arguments", forbidden=APPEND_FORBIDDEN)
    return BootLoader(
        type=reader.choice("type", TYPES, default.type), consoles=consoles, append=append
    )


def esp_of(layout: Layout) -> Partition:
    """The layout's EFI system partition (the check at load made sure there is one)."""
    return next(p for p in layout.partitions if p.type == "efi")


def _fail(where: Where, message: str, hint: str, *keys: str) -> NoReturn:
    """Raise the ConfigError of a boot setup check, located at the key it names."""
    raise ConfigError(message, hint=hint, location=where(*keys), key=".".join(keys))


def _check_slots(
    bootloader: BootLoader | None, layout: Layout, mender: MenderSettings | None, where: Where
) -> None:
    """Refuse a second root slot without a boot loader to switch to it or Mender to fill it."""
    if layout.root_b is None:
        return
    slot = ("layout", "partitions", layout.root_b.key, "copy_of")
    if bootloader is None:
        _fail(
            where,
            "a second root slot needs a boot loader that switches between the slots",
            "add `bootloader: {type: grub-efi}` (GRUB boots the slot Mender chose and "
            "falls back when the new one does not commit)",
            *slot,
        )
    if mender is None:
        _fail(
            where,
            "a second root slot is for Mender updates: the project needs a `mender` section",
            "add `mender: {device_type: ..., artifact_name: ...}`",
            *slot,
        )


def _check_esp(layout: Layout | None, where: Where) -> None:
    """Refuse a boot loader without exactly one vfat EFI system partition at /boot/efi."""
    if layout is None:
        _fail(
            where,
            "a boot loader needs a layout with an EFI system partition",
            "add a layout with a partition {filesystem: vfat, type: efi, content: /boot/efi}",
            "bootloader",
        )
    esps = [p for p in layout.partitions if p.type == "efi"]
    if len(esps) != 1:
        _fail(
            where,
            f"a boot loader needs exactly one EFI system partition (`type: efi`), "
            f"the layout has {len(esps)}",
            f"add one: {{filesystem: vfat, type: efi, size: 64MiB, content: {ESP_CONTENT}}}",
            "layout",
            "partitions",
        )
    esp = esps[0]
    if esp.filesystem != "vfat" or esp.content != ESP_CONTENT:
        _fail(
            where,
            f"the EFI system partition {esp.key} must be vfat and hold {ESP_CONTENT}",
            f"write {{filesystem: vfat, type: efi, content: {ESP_CONTENT}}}: firmware reads "
            "FAT, and the running system (kernel upgrades, Mender) finds it at /boot/efi",
            "layout",
            "partitions",
            esp.key,
        )


def check_boot_setup(
    bootloader: BootLoader | None,
    layout: Layout | None,
    mender: MenderSettings | None,
    where: Where,
) -> None:
    """Refuse a boot loader without its ESP, and a second root slot without GRUB or Mender."""
    if layout is not None:
        _check_slots(bootloader, layout, mender, where)
    if bootloader is not None:
        _check_esp(layout, where)


def kernel_consoles(consoles: Sequence[str]) -> list[str]:
    """The kernel's `console=` arguments, in order."""
    return [f"console={console}" for console in consoles]
