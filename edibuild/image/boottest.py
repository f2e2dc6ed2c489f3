"""The project's `boottest` section: how to judge a boot of the image in qemu, and on what.

    boottest: {timeout: 180, expect: "login:", memory: 1024, append: "", machine: ..., dtb: ...}

Machines per architecture (the first is the default): amd64 `pc`; arm64 `virt` and
`raspi3b` (a Raspberry Pi 3 B with its own 1 GiB; `dtb` names its device tree file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edibuild.config.reader import Reader

KEYS = ("timeout", "expect", "memory", "append", "machine", "dtb")
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


def machine_of(test: BootTest, architecture: str) -> str:
    """The qemu machine a boot test runs on (its own, or the architecture's default)."""
    return test.machine or MACHINES[architecture][0]


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
    )
    on = machine_of(test, architecture)
    dtb = test.dtb
    if dtb is not None and (on != "raspi3b" or "/" in dtb or not dtb.endswith(".dtb")):
        reader.fail(f"dtb must name a .dtb file of the firmware partition on a raspi3b, "
                    f"not {test.dtb!r} on {on}", hint=f"dtb: {RASPI_DTB}", field="dtb")  # fmt: skip
    if on == "raspi3b" and test.memory != RASPI_MEMORY:
        reader.fail(f"a raspi3b has {RASPI_MEMORY} MiB, not {test.memory}",
                    hint="remove `memory`", field="memory")  # fmt: skip
    return test
