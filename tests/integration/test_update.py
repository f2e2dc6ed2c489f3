"""Mender A/B updates of the qemu VM image, end to end in qemu (UEFI firmware, TCG).

The shipped qemu-bookworm-amd64 is built twice through the real doit, in one workspace
with the session's cache: version 1 (its disk kept aside), then version 2 with a
playbook that writes a marker file and an artifact name of its own. Both carry a
throwaway key in the project's ssh_pub_keys: after an update the VM runs the artifact's
root file system, so the key must be in the image built (the boot test's debugfs key
reaches root A only).

Then, on a sparse copy of version 1's disk, booted through OVMF from its own GRUB: copy
version 2's .mender in over ssh, `mender install`, reboot, check that the VM runs from
the other root partition with the marker, `mender commit`, reboot, still there. Then an
artifact whose root file system has no kernel: install, reboot, GRUB finds no kernel and
reboots, the next boot rolls back by itself, and `mender commit` refuses.

qemu runs with -no-reboot: a reboot ends it and the test starts it again on the same
disk (a cold start reaches GRUB in seconds; OVMF's warm reset under TCG can take a
minute). Its time (two image builds, six boots, two installs) puts it in the full tier:
it runs only with EDIBUILD_FULL_UPDATE=1 (tests/conftest.py), deselected otherwise.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edibuild.image import ssh, vm
from tests.conftest import require_root, require_tool
from tests.workspace import REPO, DoitWorkspace

pytestmark = [pytest.mark.integration, pytest.mark.full_update]

NAME = "qemu-bookworm-amd64"
V2_NAME = f"{NAME}-v2"
BAD_NAME = f"{NAME}-no-kernel"
MARKER = "/etc/edibuild-update-marker"
MARKER_PLAYBOOK = f"""\
---
- name: Mark version 2 of the image
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the marker file
      ansible.builtin.copy:
        dest: {MARKER}
        content: "version 2\\n"
        mode: "0644"
"""
V2_SECTIONS = f"""
playbooks:
  850_update_marker:
    path: test_playbooks/update_marker.yml
mender:
  artifact_name: {V2_NAME}
"""
BOOT_SECONDS = 600  # one boot, reboots through GRUB included (TCG on a busy 2-core host)
TIMINGS: dict[str, float] = {}


class Timer:
    """Record how long a step took (printed at the end, `pytest -s`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = round(time.monotonic() - self.started, 1)


class Device:
    """The test's VM: one disk, booted again after every reboot (qemu runs -no-reboot)."""

    def __init__(self, disk: Path, key: Path, work: Path) -> None:
        self.disk, self.key, self.work = disk, key, work
        self.boots = 0
        self.machine: vm.VirtualMachine | None = None
        self.target: ssh.SshTarget | None = None
        self.log = work / "device.log"

    def boot(self) -> str:
        """Start qemu (again, when the boot loader reboots) until ssh works; the consoles."""
        consoles = []
        deadline = time.monotonic() + BOOT_SECONDS
        for _ in range(3):  # a boot without a kernel reboots into the rollback
            self.boots += 1
            port = vm.free_port()
            console = self.work / f"console-{self.boots}.log"
            argv = vm.uefi_disk_argv(
                "qemu-system-x86_64", self.disk, memory=1024, console=console,
                pidfile=self.work / "qemu.pid", ssh_port=port,
            )  # fmt: skip
            self.machine = vm.VirtualMachine(vm.bounded(argv, BOOT_SECONDS + 1800), console,
                                             self.work / "qemu.pid", self.log).start()  # fmt: skip
            seen = self.machine.wait_console("login:", deadline)
            consoles.append(self.machine.console_bytes().decode("utf-8", "replace"))
            if seen is not None:
                break
            assert not self.machine.running, f"no login: within {BOOT_SECONDS} s:\n{consoles[-1]}"
        else:
            pytest.fail("the VM rebooted three times without reaching a login:\n" + consoles[-1])
        known_hosts = self.work / f"known_hosts-{self.boots}"  # new host keys in a new slot
        self.target = ssh.SshTarget(port=port, user="edi", key=self.key, known_hosts=known_hosts)
        assert ssh.wait_for_login(self.target, deadline, self.log), "no ssh login"
        return "\n".join(consoles)

    def run(self, command: str, *, check: bool = True, timeout: float = 900) -> ssh.Result:
        """Run a command in the VM (it must succeed unless `check` is false)."""
        assert self.target is not None
        result = ssh.run(self.target, command, timeout=timeout, log=self.log)
        assert not check or result.returncode == 0, f"{command}: {result}"
        return result

    def facts(self) -> dict[str, str]:
        """The running root partition, the artifact and the Mender boot environment."""
        out = self.run(
            "echo root=$(findmnt -n -o SOURCE /); "
            "echo artifact=$(sudo mender show-artifact 2>>/tmp/mender.log); "
            "sudo grub-mender-grubenv-print mender_boot_part upgrade_available bootcount; "
            f"echo marker=$(cat {MARKER} 2>/dev/null)"
        ).stdout
        return ssh.parse_facts(out)

    def install(self, artifact: Path) -> ssh.Result:
        """Copy an artifact in over ssh and install it with the standalone client."""
        assert self.target is not None
        ssh.copy_in(self.target, artifact, f"/tmp/{artifact.name}")
        result = self.run(f"sudo mender install /tmp/{artifact.name}", check=False)
        self.run(f"rm -f /tmp/{artifact.name}")
        return result

    def reboot(self) -> str:
        """Reboot the system (qemu ends with it) and boot again; the consoles."""
        self.run("sudo systemctl reboot", check=False, timeout=60)
        assert self.machine is not None
        ended = self.machine.wait_exit(time.monotonic() + 300)
        assert ended is not None, "the VM did not shut down within 300 s of `systemctl reboot`"
        return self.boot()

    def close(self) -> None:
        """Stop qemu."""
        if self.machine is not None:
            self.machine.stop()


def workspace(tmp: Path, cache: Path, key: Path) -> DoitWorkspace:
    """The shipped projects with the throwaway key in ssh_pub_keys."""
    ws = DoitWorkspace(tmp, REPO / "projects", cache)
    keys = ws.projects / "ssh_pub_keys"
    keys.mkdir(exist_ok=True)
    (keys / "edibuild-update-test.pub").write_text(key.with_suffix(".pub").read_text())
    return ws


@pytest.fixture(scope="module")
def versions(
    tmp_path_factory: pytest.TempPathFactory, shared_cache: Path
) -> Iterator[dict[str, Path]]:
    """Version 1's disk and root image, version 2's artifact, and the test key."""
    require_root()
    require_tool("mmdebstrap", "lxc", "mkfs.ext4", "sfdisk", "mender-artifact",
                 "qemu-system-x86_64", "ssh", "scp", "ssh-keygen")  # fmt: skip
    if not vm.OVMF.is_file():
        pytest.fail(f"{vm.OVMF} (package ovmf) is missing")
    base = tmp_path_factory.mktemp("update")
    key = base / "testkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "update-test",
                    "-f", str(key)], check=True)  # fmt: skip
    ws = workspace(base / "ws", shared_cache, key)
    with Timer("build v1"):
        ws.doit(f"image:{NAME}", timeout=3600)
    disk, root = base / "v1.img", base / "v1-root.ext4"
    for built, kept in ((f"{NAME}.img", disk), ("root_a.ext4", root)):
        subprocess.run(["cp", "--sparse=always", str(ws.artifacts(NAME) / built), str(kept)],
                       check=True)  # fmt: skip
    # Version 2 in the same workspace: configure starts from version 1's layer after the
    # last playbook before the marker's (the project folder is part of the layers' key).
    (ws.projects / "test_playbooks").mkdir()
    (ws.projects / "test_playbooks" / "update_marker.yml").write_text(MARKER_PLAYBOOK)
    with (ws.projects / f"{NAME}.yml").open("a") as f:
        f.write(V2_SECTIONS)
    with Timer("build v2"):
        ws.doit(f"image:{NAME}", timeout=3600)
    yield {"disk": disk, "root": root, "v2": ws.artifacts(NAME) / f"{NAME}.mender",
           "key": key, "base": base}  # fmt: skip
    print("\nupdate test timings (s):", json.dumps(TIMINGS))


def no_kernel_artifact(base: Path, size: int) -> Path:
    """An artifact whose root file system (the right size) holds no kernel: it cannot boot."""
    image, artifact = base / "no-kernel.ext4", base / "no-kernel.mender"
    with image.open("wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "rootfs", str(image)], check=True)
    subprocess.run(["mender-artifact", "write", "rootfs-image", "-t", "qemux86-64",
                    "-n", BAD_NAME, "-f", str(image), "-o", str(artifact)],
                   check=True, capture_output=True)  # fmt: skip
    image.unlink()
    return artifact


def test_update_to_b_commits_and_a_broken_update_rolls_back(versions: dict[str, Path]) -> None:
    base = versions["base"]
    disk = base / "device.img"
    subprocess.run(["cp", "--sparse=always", str(versions["disk"]), str(disk)], check=True)
    bad = no_kernel_artifact(base, versions["root"].stat().st_size)
    device = Device(disk, versions["key"], base)
    started = time.monotonic()
    try:
        with Timer("boot v1"):
            device.boot()
        facts = device.facts()
        assert facts["root"].endswith("2") and facts["mender_boot_part"] == "2", facts
        assert facts["artifact"] == f"{NAME}-dev" and facts["marker"] == "", facts

        with Timer("install v2"):
            installed = device.install(versions["v2"])
        assert installed.returncode == 0, installed
        facts = device.facts()
        assert (facts["mender_boot_part"], facts["upgrade_available"]) == ("3", "1"), facts

        with Timer("reboot into v2"):
            console = device.reboot()
        assert "Booting the new update" in console
        facts = device.facts()
        assert facts["root"].endswith("3") and facts["marker"] == "version 2", facts
        assert facts["artifact"] == V2_NAME and facts["bootcount"] == "1", facts
        device.run("sudo mender commit")
        assert device.facts()["upgrade_available"] == "0"

        with Timer("reboot after commit"):
            console = device.reboot()
        facts = device.facts()
        assert facts["root"].endswith("3") and facts["artifact"] == V2_NAME, facts
        assert "rolling back" not in console

        with Timer("install broken"):
            installed = device.install(bad)
        assert installed.returncode == 0, installed
        assert device.facts()["mender_boot_part"] == "2"

        with Timer("reboot, roll back"):
            console = device.reboot()
        assert "Booting the new update failed: rebooting to roll back" in console, console
        assert "The update did not commit: rolling back" in console, console
        facts = device.facts()
        assert facts["root"].endswith("3") and facts["marker"] == "version 2", facts
        assert (facts["mender_boot_part"], facts["upgrade_available"]) == ("3", "0"), facts
        refused = device.run("sudo mender commit", check=False)
        assert refused.returncode != 0, refused
        assert device.facts()["artifact"] == V2_NAME
    finally:
        device.close()
        TIMINGS["qemu part"] = round(time.monotonic() - started, 1)
        disk.unlink(missing_ok=True)
