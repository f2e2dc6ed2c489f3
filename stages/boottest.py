"""Stage `boottest`: boot the disk image in qemu (no KVM) and wait for a console marker.

Inputs: `disk`'s image, and `partitions`' image that holds /boot (the kernel and initrd
are read from it with debugfs or mtools). Outputs: `result` = `boottest.json` and
`console` = `boottest-console.log`. Config: the section
`boottest: {timeout: 180, expect: "login:", memory: 1024, append: ""}`; the stage is
disabled without it and supports amd64 projects. The VM runs on a throw-away snapshot of
the image, without network, and is killed as soon as the marker shows up, on failure and
on interrupt; `timeout` bounds it even if edibuild itself is killed. A boot that does
not reach the marker raises StageFailed with the end of the console.
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
from edibuild.errors import CommandFailed, ConfigError, StageFailed
from edibuild.layout import Layout, Partition, parse_layout
from edibuild.project import Json, Project
from edibuild.stage import Stage, StageContext, Tool

KEYS = ("timeout", "expect", "memory", "append")
CONSOLE_TAIL = 30
KERNEL_RE = re.compile(r"^vmlinuz-(.+)$")


@dataclass(frozen=True)
class BootTest:
    """How to judge a boot: the marker to wait for, within how many seconds."""

    timeout: int = 180
    expect: str = "login:"
    memory: int = 1024
    append: str = ""


def parse_boottest(project: Project) -> BootTest | None:
    """Validate the `boottest` section; None when the project is not boot-tested."""
    raw = project.section("boottest")
    if raw is None:
        return None

    def fail(message: str, hint: str, *keys: str) -> ConfigError:
        return ConfigError(message, hint=hint, location=project.where("boottest", *keys),
                           key=".".join(("boottest", *keys)))  # fmt: skip

    if not isinstance(raw, Mapping):
        raise fail("must be a mapping", 'boottest: {timeout: 180, expect: "login:"}')
    for key in raw:
        if key not in KEYS:
            raise fail(f"unknown key {key!r}", f"known keys: {', '.join(KEYS)}", key)
    if project.bootstrap.architecture != "amd64":
        raise fail(f"boot tests run amd64 images only, not {project.bootstrap.architecture}",
                   "remove the boottest section for this project")  # fmt: skip
    test = BootTest(**raw)
    for key in ("timeout", "memory"):
        value = getattr(test, key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise fail(f"{key} must be a positive whole number, not {value!r}", "", key)
    if not isinstance(test.expect, str) or not test.expect:
        raise fail("expect must be a non-empty string", 'expect: "login:"', "expect")
    if not isinstance(test.append, str):
        raise fail("append must be a string", 'append: "quiet"', "append")
    return test


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


def qemu_command(ctx: StageContext, test: BootTest, kernel: Path, initrd: Path) -> list[str]:
    """Return the qemu command line: TCG, no network, serial console to a file, a snapshot."""
    layout = parse_layout(ctx.project)
    append = f"root=/dev/vda{layout.root.number} rootwait console=ttyS0 panic=-1 {test.append}"
    return [
        "timeout", "--kill-after=10", str(test.timeout + 30),  # bounds an orphaned VM
        "qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-smp", "2",
        "-m", str(test.memory), "-nodefaults", "-no-reboot", "-display", "none",
        "-nic", "none", "-serial", f"file:{ctx.scratch('console.log')}",
        "-pidfile", str(ctx.scratch("qemu.pid")),
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", append.strip(),
        "-drive", f"file={ctx.input('disk', 'image')},format=raw,if=virtio,snapshot=on",
    ]  # fmt: skip


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
    errors: list[BaseException] = []

    def vm() -> None:
        try:
            runner.run(argv, log=ctx.log, check=False, env={"TMPDIR": str(ctx.workdir)})
        except CommandFailed as exc:
            errors.append(exc)

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
    finally:
        _stop(pidfile)
        thread.join(15)
    raise _failed(test, console, time.monotonic() - started, thread.is_alive() or errors)


def _failed(test: BootTest, console: Path, seconds: float, timed_out: object) -> StageFailed:
    text = console.read_bytes().decode("utf-8", "replace") if console.exists() else ""
    tail = "\n".join(text.replace("\r", "").splitlines()[-CONSOLE_TAIL:])
    why = f"within {test.timeout} s" if seconds >= test.timeout else "(the VM stopped)"
    return StageFailed(
        f"the image did not show {test.expect!r} on its console {why}; "
        f"last {CONSOLE_TAIL} lines:\n{tail}",
        hint="raise boottest.timeout if the boot was merely slow; the whole console is "
        f"in {console}",
    )


def build(ctx: StageContext) -> Json:
    """Boot the image in qemu and record how long it took to reach the marker."""
    test = parse_boottest(ctx.project)
    assert test is not None
    kernel, initrd, version = kernel_and_initrd(ctx, parse_layout(ctx.project))
    seconds = boot(ctx, test, qemu_command(ctx, test, kernel, initrd))
    ctx.output("console").parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.scratch("console.log"), ctx.output("console"))
    result = {"booted": True, "expect": test.expect, "seconds": round(seconds, 1),
              "kernel": version, "accelerator": "tcg"}  # fmt: skip
    ctx.output("result").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def config(project: Project) -> Json:
    """The boot test settings (timeout, marker, memory, extra kernel arguments)."""
    test = parse_boottest(project)
    assert test is not None
    return vars(test)


STAGE = Stage(
    name="boottest",
    doc="Boot the disk image in qemu (no KVM needed) up to a console marker",
    upstream=("partitions", "disk"),
    outputs=lambda project: {"result": "boottest.json", "console": "boottest-console.log"},
    config=config,
    build=build,
    enabled=lambda project: parse_boottest(project) is not None,
    tools=lambda project: (
        Tool("qemu-system-x86_64", "qemu-system-x86"), Tool("timeout", "coreutils"),
        Tool("debugfs", "e2fsprogs"), Tool("mcopy", "mtools"),
    ),
    needs_root=False,
    image_output=True,
)  # fmt: skip
