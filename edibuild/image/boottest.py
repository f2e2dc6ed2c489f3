"""The project's `boottest` section: how to judge a boot of the image in qemu, and on what.

    boottest: {timeout: 180, expect: "login:", memory: 1024, append: "", machine: ...,
               dtb: ..., ssh: true, user: edi}

Machines per architecture (the first is the default): amd64 `pc`; arm64 `virt` and
`raspi3b` (a Raspberry Pi 3 B with its own 1 GiB; `dtb` names its device tree file).
`timeout` bounds the whole test (console marker, and the ssh login after it).

`ssh`: after the console marker, log in over ssh through qemu's user-mode network
(restricted, link-local) with a throwaway key, run a command, check that password
logins are refused and that the host keys were made on this boot. By default on when
the image boots from its own boot loader (a `bootloader` section: edibuild/image/
bootloader.py); never on a raspi3b (qemu's board has no network that helps). `user`
is who logs in: by default the project's `default_user_name` parameter, else `edi`
(what the base_system playbook creates).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edibuild.config import values
from edibuild.config.reader import Reader

KEYS = ("timeout", "expect", "memory", "append", "machine", "dtb", "ssh", "user")
DEFAULT_USER = "edi"
# Debian architecture -> the machines it boots on (the first is the default).
MACHINES: Mapping[str, tuple[str, ...]] = {"amd64": ("pc",), "arm64": ("virt", "raspi3b")}
RASPI_MEMORY = 1024  # qemu's raspi3b has exactly the 1 GiB of the real board
RASPI_DTB = "bcm2837-rpi-3-b.dtb"  # what the firmware picks on a 3 B (upstream names)


@dataclass(frozen=True)
class BootTest:
    """How to judge a boot: the marker to wait for, within how many seconds, and on what."""

    timeout: int = 180
    expect: str = "login:"
    memory: int = 1024
    append: str = ""
    machine: str | None = None  # None: the architecture's default machine
    dtb: str | None = None  # raspi3b: device tree file in the firmware partition
    ssh: bool | None = None  # None: on for images that boot from their own boot loader
    user: str | None = None  # None: the project's default_user_name, else edi


def machine_of(test: BootTest, architecture: str) -> str:
    """The qemu machine a boot test runs on (its own, or the architecture's default)."""
    return test.machine or MACHINES[architecture][0]


def ssh_on(test: BootTest, has_bootloader: bool) -> bool:
    """Whether the boot test logs in over ssh (its own setting, or: boots from its disk)."""
    return has_bootloader if test.ssh is None else test.ssh


def ssh_user(test: BootTest, parameters: Mapping[str, object]) -> str:
    """Who logs in over ssh: the setting, the default_user_name parameter, or edi."""
    named = parameters.get("default_user_name")
    return test.user or (named if isinstance(named, str) and named else DEFAULT_USER)


def parse_boottest(reader: Reader | None, architecture: str) -> BootTest | None:
    """Read the `boottest` section; None when the project is not boot-tested."""
    if reader is None:
        return None
    reader.known(KEYS)
    if architecture not in MACHINES:
        reader.fail(f"boot tests run {' and '.join(MACHINES)} images only, not {architecture}",
                    hint="remove the boottest section for this project")  # fmt: skip
    default = BootTest()
    machine = None
    if reader.raw("machine") is not None:
        machine = reader.choice("machine", MACHINES[architecture])
    test = BootTest(
        timeout=reader.number("timeout", default.timeout, minimum=1, maximum=86400),
        expect=reader.text("expect", default.expect, what="a console marker"),
        memory=reader.number("memory", default.memory, minimum=64, maximum=256 * 1024),
        append=reader.text("append", what="kernel arguments") if reader.raw("append") else "",
        machine=machine,
        dtb=reader.optional_text("dtb", what="a .dtb file name"),
        ssh=reader.boolean("ssh", False) if reader.raw("ssh") is not None else None,
        user=values.user_name(reader.raw("user"), key=reader.key("user"),
                              location=reader.location("user"))
        if reader.raw("user") is not None else None,
    )  # fmt: skip
    on = machine_of(test, architecture)
    dtb = test.dtb
    if dtb is not None and (on != "raspi3b" or "/" in dtb or not dtb.endswith(".dtb")):
        reader.fail(f"dtb must name a .dtb file of the firmware partition on a raspi3b, "
                    f"not {test.dtb!r} on {on}", hint=f"dtb: {RASPI_DTB}", field="dtb")  # fmt: skip
    if on == "raspi3b" and test.ssh:
        reader.fail("qemu's raspi3b has no network an ssh login could use",
                    hint="remove `ssh` (a Raspberry Pi boot test checks the console)",
                    field="ssh")  # fmt: skip
    if on == "raspi3b" and test.memory != RASPI_MEMORY:
        reader.fail(f"a raspi3b has {RASPI_MEMORY} MiB, not {test.memory}",
                    hint="remove `memory`", field="memory")  # fmt: skip
    return test
