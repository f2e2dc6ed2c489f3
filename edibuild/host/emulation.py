"""Let the host run foreign-architecture binaries (qemu-user-static through binfmt_misc).

A foreign rootfs (arm64 on an amd64 host) is bootstrapped and configured by running its
own binaries, so the kernel must hand them to qemu. The F (fix binary) flag makes the
kernel open the interpreter once at registration, so it works inside chroots and
containers that do not contain qemu themselves.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edibuild.errors import EdibuildError
from edibuild.run import command_line, run

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_DATABASE = Path("/var/lib/binfmts")  # formats binfmt-support knows (from qemu-user-static)
ARCH_TEST_HELPERS = Path("/usr/lib/arch-test")  # tiny static binaries, one per Debian arch

# Debian architecture -> qemu's name for it (qemu-NAME-static, binfmt entry qemu-NAME).
QEMU_NAMES: dict[str, str] = {
    "amd64": "x86_64",
    "i386": "i386",
    "arm64": "aarch64",
    "armhf": "arm",
    "armel": "arm",
    "riscv64": "riscv64",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
    "mips64el": "mips64el",
    "mipsel": "mipsel",
    "loong64": "loongarch64",
}

# Kernel machine name -> Debian architectures it runs without emulation.
NATIVE: dict[str, frozenset[str]] = {
    "x86_64": frozenset({"amd64", "i386"}),
    "aarch64": frozenset({"arm64", "armhf", "armel"}),
    "armv7l": frozenset({"armhf", "armel"}),
    "riscv64": frozenset({"riscv64"}),
    "ppc64le": frozenset({"ppc64el"}),
    "s390x": frozenset({"s390x"}),
}


@dataclass(frozen=True)
class BinfmtEntry:
    """The state of one binfmt_misc registration, as the kernel reports it."""

    enabled: bool
    interpreter: str | None
    flags: str

    @property
    def usable(self) -> bool:
        """Tell whether it works for builds: enabled, with F so chroots need no qemu inside."""
        return self.enabled and "F" in self.flags


def parse_binfmt_entry(text: str) -> BinfmtEntry:
    """Parse /proc/sys/fs/binfmt_misc/NAME ("enabled", "interpreter ...", "flags: PF", ...)."""
    enabled, interpreter, flags = False, None, ""
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "enabled":
            enabled = True
        elif key == "interpreter":
            interpreter = value.strip()
        elif key == "flags:":
            flags = value.strip()
    return BinfmtEntry(enabled, interpreter, flags)


def needs_emulation(architecture: str, machine: str | None = None) -> bool:
    """Tell whether `architecture` (Debian name) needs qemu on this host (or on `machine`)."""
    machine = machine or os.uname().machine
    return architecture not in NATIVE.get(machine, frozenset())


def qemu_name(architecture: str) -> str:
    """Return qemu's name for a Debian architecture (arm64 -> aarch64)."""
    try:
        return QEMU_NAMES[architecture]
    except KeyError:
        known = ", ".join(sorted(QEMU_NAMES))
        raise EdibuildError(
            f"no emulation known for the architecture {architecture!r}",
            hint=f"use one of: {known}",
        ) from None


def read_entry(name: str, binfmt_dir: Path = BINFMT_DIR) -> BinfmtEntry | None:
    """Return the kernel's registration `name` (e.g. qemu-aarch64), or None if absent."""
    try:
        return parse_binfmt_entry((binfmt_dir / name).read_text())
    except FileNotFoundError:
        return None


def _as_root(what: str, argv: list[str]) -> None:
    if os.geteuid() != 0:
        raise EdibuildError(f"{what} needs root", hint=f"run as root: {command_line(argv)}")
    run(argv)


def _mount_binfmt_misc() -> list[str]:
    if (BINFMT_DIR / "status").exists():
        return []
    argv = ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)]
    _as_root("binfmt_misc is not mounted, and mounting it", argv)
    return [f"mounted binfmt_misc on {BINFMT_DIR}"]


def _enable(name: str) -> list[str]:
    entry = read_entry(name)
    if entry is not None and entry.usable:
        return []
    if entry is not None and entry.enabled:
        raise EdibuildError(
            f"{name} is registered without the F (fix binary) flag ({entry.flags or 'no flags'}),"
            " so it would not work inside the build's chroot or container",
            hint=f"as root: echo -1 > {BINFMT_DIR / name} && update-binfmts --enable {name}",
        )
    if shutil.which("update-binfmts") is None or not (BINFMT_DATABASE / name).exists():
        raise EdibuildError(
            f"running foreign binaries needs {name} from qemu-user-static, which is not installed",
            hint=f"as root: apt-get install qemu-user-static binfmt-support && "
            f"update-binfmts --enable {name}",
        )
    _as_root(f"enabling {name}", ["update-binfmts", "--enable", name])
    entry = read_entry(name)
    if entry is None or not entry.usable:
        raise EdibuildError(
            f"update-binfmts --enable {name} did not register it with the F flag",
            hint=f"look at {BINFMT_DIR / name} and {BINFMT_DATABASE / name}",
        )
    return [f"enabled {name} (interpreter {entry.interpreter}, flags {entry.flags})"]


def check_runs(architecture: str) -> None:
    """Run a tiny static `architecture` binary (from arch-test) if present; raise if it fails."""
    helper = ARCH_TEST_HELPERS / architecture
    if not helper.exists():
        return
    proc = run([helper], capture=True, check=False)
    if proc.returncode != 0 or proc.stdout.strip() != b"ok":
        raise EdibuildError(
            f"an {architecture} test binary ({helper}) does not run here, even with emulation",
            hint=f"check with: arch-test {architecture}; and look at {BINFMT_DIR}",
        )


def ensure_emulation(architecture: str) -> list[str]:
    """Make `architecture`'s binaries run on this host; return what was done, as sentences."""
    if not needs_emulation(architecture):
        return []
    name = f"qemu-{qemu_name(architecture)}"
    done = _mount_binfmt_misc()
    done += _enable(name)
    check_runs(architecture)
    return done
