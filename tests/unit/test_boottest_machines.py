"""Boot test machines: validation per architecture, and reading a Raspberry Pi's boot files."""

from __future__ import annotations

from pathlib import Path

import pytest

from edibuild.config.project import Bootstrap, Project
from edibuild.config.sections import with_settings
from edibuild.data import Json
from edibuild.engine.stage import StageContext
from edibuild.errors import ConfigError, StageFailed
from edibuild.image import bootfiles, bootvm
from stages import boottest

# What Debian's raspi-firmware hook writes, plus the custom part of the raspberry_pi playbook.
CONFIG_TXT = """\
# Do not modify this file!
arm_64bit=1

enable_uart=1
upstream_kernel=1

kernel=vmlinuz-6.1.0-28-arm64
# For details on the initramfs directive, see
initramfs initrd.img-6.1.0-28-arm64

# Inserted by /etc/default/raspi-firmware-custom
[pi3]
device_tree=bcm2837-rpi-3-b.dtb
[pi3+]
device_tree=bcm2837-rpi-3-b-plus.dtb
[pi4]
device_tree=bcm2711-rpi-4-b.dtb
[all]
"""
CMDLINE_TXT = (
    "console=tty0 console=ttyS1,115200 root=LABEL=rootfs rw fsck.repair=yes "
    "net.ifnames=0 cma=64M rootwait\n"
)


def project(arch: str, section: Json) -> Project:
    """A hand-made project with a boottest section."""
    return with_settings(Project(
        name="pi3", file=Path("pi3.yml"), description="", parameters={},
        bootstrap=Bootstrap(arch, "bookworm", "http://deb.debian.org/debian"),
        lxd_profiles=(), playbooks=(), sections={"boottest": section},
    ))  # fmt: skip


def test_config_txt_settings_for_a_pi3() -> None:
    """The [pi3] device tree applies, the [pi3+] and [pi4] ones do not; initramfs is a name."""
    settings = bootfiles.parse_config_txt(CONFIG_TXT)
    assert settings["kernel"] == "vmlinuz-6.1.0-28-arm64"
    assert settings["initramfs"] == "initrd.img-6.1.0-28-arm64"
    assert settings["device_tree"] == "bcm2837-rpi-3-b.dtb"
    assert settings["arm_64bit"] == "1"
    pi4 = bootfiles.parse_config_txt(CONFIG_TXT, ("all", "pi4"))
    assert pi4["device_tree"] == "bcm2711-rpi-4-b.dtb"


def test_config_txt_followkernel_and_comments() -> None:
    """`initramfs NAME followkernel` keeps the name; trailing comments are dropped."""
    text = "kernel=vmlinuz-x # the kernel\ninitramfs initrd.img-x followkernel\n"
    assert bootfiles.parse_config_txt(text) == {"kernel": "vmlinuz-x",
                                               "initramfs": "initrd.img-x"}  # fmt: skip


def test_raspi_cmdline_is_the_boards_own() -> None:
    """The image's root=, rootwait and consoles stay as the board boots them."""
    line = bootfiles.raspi_cmdline(CMDLINE_TXT)
    assert line.split()[:-1] == CMDLINE_TXT.split()
    assert line.split()[-1] == "panic=-1"


def test_raspi_console_is_the_mini_uart(tmp_path: Path) -> None:
    """On raspi3b the console file is qemu's second serial port (the board's ttyS1)."""
    console = tmp_path / "console.log"
    assert bootvm.serial_ports("raspi3b", console) == [
        "-serial", "null", "-serial", f"file:{console}"]  # fmt: skip
    assert bootvm.serial_ports("virt", console) == ["-serial", f"file:{console}"]


def test_machines_default_per_architecture() -> None:
    """amd64 boots on pc, arm64 on virt unless the project asks for raspi3b."""
    amd64 = project("amd64", {}).boottest
    arm64 = project("arm64", {}).boottest
    raspi = project("arm64", {"machine": "raspi3b"}).boottest
    assert amd64 is not None and arm64 is not None and raspi is not None
    assert boottest.machine_of(amd64, "amd64") == "pc"
    assert boottest.machine_of(arm64, "arm64") == "virt"
    assert boottest.machine_of(raspi, "arm64") == "raspi3b"


def test_config_slice_omits_unset_keys() -> None:
    """amd64's slice is unchanged by the new keys; raspi3b's names machine and dtb."""
    assert "machine" not in boottest.STAGE.config(project("amd64", {}))
    section = {"machine": "raspi3b", "dtb": "bcm2837-rpi-3-b.dtb", "timeout": 600}
    assert boottest.STAGE.config(project("arm64", section)) == {
        "timeout": 600, "expect": "login:", "memory": 1024, "append": "",
        "machine": "raspi3b", "dtb": "bcm2837-rpi-3-b.dtb"}  # fmt: skip


def test_tools_follow_the_architecture() -> None:
    """arm64 needs qemu-system-aarch64 from qemu-system-arm, amd64 the x86 one."""
    arm = {t.command: t.package for t in boottest.STAGE.tools(project("arm64", {}))}
    amd = {t.command: t.package for t in boottest.STAGE.tools(project("amd64", {}))}
    assert arm["qemu-system-aarch64"] == "qemu-system-arm"
    assert amd["qemu-system-x86_64"] == "qemu-system-x86"


@pytest.mark.parametrize(
    ("arch", "section", "pattern"),
    [
        ("amd64", {"machine": "raspi3b"}, r"(?s)unknown machine 'raspi3b'.*known: pc"),
        ("arm64", {"machine": "raspi4b"}, r"(?s)unknown machine 'raspi4b'.*did you mean 'raspi3b'"),
        ("arm64", {"dtb": "bcm2837-rpi-3-b.dtb"}, r"on a raspi3b, not .* on virt"),
        ("arm64", {"machine": "raspi3b", "dtb": "../x.dtb"}, r"must name a .dtb file"),
        ("arm64", {"machine": "raspi3b", "memory": 2048}, r"raspi3b has 1024 MiB"),
        ("s390x", {}, r"amd64 and arm64 images only"),
    ],
)
def test_bad_machine_settings(arch: str, section: Json, pattern: str) -> None:
    """Machine, dtb and memory mistakes are ConfigErrors at plan time, with the key."""
    with pytest.raises(ConfigError, match=pattern) as info:
        project(arch, section)
    assert info.value.key is not None and info.value.key.startswith("boottest")


def _context(tmp_path: Path) -> StageContext:
    proj = project("amd64", {"timeout": 5})
    log = tmp_path / "log" / "boottest.log"
    log.parent.mkdir()
    return StageContext(proj, boottest.STAGE, "k" * 64, tmp_path, log, {}, {}, 0)


def test_a_vm_that_cannot_start_is_reported_as_such_not_as_a_timeout(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    test = boottest.BootTest(timeout=5)
    with pytest.raises(StageFailed, match="qemu exited with code 3 before 'login:'"):
        bootvm.boot(ctx, test, ["sh", "-c", "echo qemu: cannot open disk >&2; exit 3"])
    assert "cannot open disk" in ctx.log.read_text()
    with pytest.raises(StageFailed, match=r"qemu could not be started: .*not found"):
        bootvm.boot(ctx, test, ["no-such-qemu-here"])
