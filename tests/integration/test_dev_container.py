"""The seed's workflow end to end: the developer's own cross-development container.

A host user made for the test (uid not 1000) runs `doit container:pi3-bookworm-arm64-cross-dev`
through SUDO_USER, on the shipped project (its container renamed, its target set to the
arm64 bootstrap the suite builds anyway). As that user: hello.cpp written on the host,
built with g++ and aarch64-linux-gnu-g++ inside, a CMake project linking zlib for arm64
through the toolchain file and pkg-config, the outputs theirs on the host, hello-pi run on
the target's root file system (qemu-aarch64-static -L on the arm64 bootstrap tarball of
it-bookworm-arm64: the same suite and mirror as the pi3 image, and already in the shared
cache; the full pi3 rootfs costs 25 minutes), ssh with the key (a password refused), apt
inside the running container, a changed input that keeps the old container, and a clean
that leaves nothing of edibuild's behind. The user, its subuid lines and its workspace go
at the end. The emulated container (arm64 under qemu-user, 10+ minutes) is the full tier:
EDIBUILD_FULL_PI=1 ./run-tests -m full_pi tests/integration/test_dev_container.py.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edibuild.lxd import aptproxyd
from tests.conftest import REPO, require_root, require_tool
from tests.workspace import DoitWorkspace

pytestmark = pytest.mark.integration

PROJECT = "pi3-bookworm-arm64-cross-dev"
EMULATED = "pi3-bookworm-arm64-dev"
TARGET = "it-bookworm-arm64"  # the arm64 bootstrap test_bootstrap builds (shared cache)
HELLO = """#include <iostream>

int main()
{
    std::cout << "Hello Pi!" << std::endl;
    return 0;
}
"""
CMAKE = """cmake_minimum_required(VERSION 3.13)
project(zdemo C)
find_package(PkgConfig REQUIRED)
pkg_check_modules(ZLIB REQUIRED IMPORTED_TARGET zlib)
add_executable(zdemo zdemo.c)
target_link_libraries(zdemo PkgConfig::ZLIB)
"""
ZDEMO = """#include <stdio.h>
#include <zlib.h>
int main(void) { printf("zlib %s\\n", zlibVersion()); return 0; }
"""
TOOLCHAIN = "/usr/local/share/edibuild/aarch64-linux-gnu.cmake"
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"]  # fmt: skip
AARCH64 = 183  # ELF e_machine


@dataclass
class Developer:
    """The host user the test makes: name, ids, home, ssh key, and what edibuild added."""

    name: str
    uid: int
    gid: int
    home: Path
    key: Path


def sh(argv: list[str], *, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    if check:
        assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
    return proc  # type: ignore[no-any-return]


def as_user(dev: Developer, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run argv on the host as the developer."""
    return sh(["runuser", "-u", dev.name, "--", *argv], **kw)


def inside(box: str, dev: Developer, script: str, check: bool = True) -> str:
    """Run a shell line in the container as the developer (a login shell); return stdout."""
    return sh(["lxc", "exec", box, "--", "su", "-l", dev.name, "-c", script], check=check).stdout


def free_uid() -> int:
    """A uid and gid free on the host, not 1000 (the one the image's default user has)."""
    for uid in range(23456, 24000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if sh(["getent", "group", str(uid)], check=False).returncode != 0:
                return uid
    raise AssertionError("no free uid")


def remove_line(path: Path, line: str) -> None:
    """Remove one exact line from a subuid/subgid file."""
    lines = path.read_text().splitlines()
    if line in lines:
        lines.remove(line)
        path.write_text("".join(f"{x}\n" for x in lines))


@pytest.fixture(scope="module")
def developer() -> Iterator[Developer]:
    """A host user for the test; removed with its home, workspace and subuid lines after."""
    require_root()
    require_tool("lxc", "runuser", "useradd", "userdel", "ssh", "ssh-keygen", "mmdebstrap",
                 "zstd", "qemu-aarch64-static")  # fmt: skip
    name, uid = f"e13t{secrets.token_hex(2)}", free_uid()
    before = {p: p.read_text() for p in (Path("/etc/subuid"), Path("/etc/subgid"))}
    sh(["groupadd", "-g", str(uid), name])
    sh(["useradd", "-m", "-u", str(uid), "-g", str(uid), "-s", "/bin/bash", name])
    home = Path(pwd.getpwnam(name).pw_dir)
    dev = Developer(name, uid, uid, home, home / ".ssh" / "id_ed25519")
    try:
        as_user(dev, ["mkdir", "-m", "700", "-p", str(home / ".ssh")])
        as_user(dev, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(dev.key)])
        yield dev
    finally:
        sh(["userdel", "-r", name], check=False)
        sh(["groupdel", name], check=False)
        for path, text in before.items():
            if f"root:{uid}:1" not in text.splitlines():
                remove_line(path, f"root:{uid}:1")


@dataclass
class Run:
    """The test's workspace, its container's name and the record of the last build."""

    ws: DoitWorkspace
    box: str
    dev: Developer

    def build(self, project: str = PROJECT) -> tuple[str, float]:
        started = time.monotonic()
        out = self.ws.doit(f"container:{project}", timeout=3600)
        return out, time.monotonic() - started

    def record(self, project: str = PROJECT) -> dict[str, object]:
        path = self.ws.artifacts(project) / "dev-container.json"
        return json.loads(path.read_text())  # type: ignore[no-any-return]


def leftovers(prefix: str) -> list[str]:
    """LXD containers, image aliases and profiles whose names start with `prefix`."""
    found = []
    for argv in (["lxc", "list", "-c", "n"], ["lxc", "image", "alias", "list"],
                 ["lxc", "profile", "list"]):  # fmt: skip
        out = sh([*argv, "--format", "csv"]).stdout
        found += [line.split(",")[0] for line in out.splitlines() if line.startswith(prefix)]
    return found


@pytest.fixture(scope="module")
def run(
    developer: Developer, tmp_path_factory: pytest.TempPathFactory, shared_cache: Path
) -> Iterator[Run]:
    """The shipped projects in a private workspace; the container named for this test."""
    ws = DoitWorkspace(tmp_path_factory.mktemp("devws"), REPO / "projects", shared_cache)
    shutil.copy(REPO / "tests" / "integration" / "projects" / f"{TARGET}.yml", ws.projects)
    box = f"e13-{developer.name}-cross"
    with (ws.projects / f"{PROJECT}.yml").open("a") as f:
        f.write(f"container:\n  name: {box}\n  target: {TARGET}\n")
    ws.env["SUDO_USER"] = developer.name
    try:
        yield Run(ws, box, developer)
    finally:
        for name in sh(["lxc", "list", "--format", "csv", "-c", "n"]).stdout.split():
            if name.startswith(box):
                sh(["lxc", "delete", "--force", name], check=False)
        ws.run("clean", "-c", "--forget", f"container:{PROJECT}")  # the LXD images too
        aptproxyd.stop(aptproxyd.state_dir(shared_cache))


def elf_machine(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[18:20], "little")


def test_the_seeds_workflow_in_the_cross_container(run: Run) -> None:
    """Build the container; hello.cpp from the host, g++ and the cross g++ inside; cmake +
    pkg-config for arm64; outputs the user's on the host; hello-pi on the target rootfs."""
    dev, box = run.dev, run.box
    run.ws.doit(f"bootstrap:{TARGET}")  # the target's package list (and root file system)
    out, cold = run.build()
    print(f"\ncold doit container:{PROJECT}: {cold:.0f} s")
    record = run.record()
    port = record["ssh"]["port"]  # type: ignore[index]
    assert f"lxc exec {box} -- su -l {dev.name}" in out
    assert f"ssh -p {port} {dev.name}@127.0.0.1" in out
    assert f"added /etc/subuid: root:{dev.uid}:1" in out
    assert "/usr/local/share/edibuild/aarch64-linux-gnu.cmake" in out
    compared = record["target_libraries"]
    assert "target libraries:" in out and isinstance(compared, dict) and compared["same"] > 0
    print(f"target libraries against {TARGET}: {compared}")
    workspace = dev.home / "edibuild-workspace"
    assert record["workspace"] == str(workspace) and workspace.stat().st_uid == dev.uid
    # The seed's workflow: write on the host, build and test inside, cross-compile.
    hello = workspace / "hello-pi"
    as_user(run.dev, ["mkdir", "-p", str(hello / "zdemo")])
    for path, text in ((hello / "hello.cpp", HELLO), (hello / "zdemo" / "CMakeLists.txt", CMAKE),
                       (hello / "zdemo" / "zdemo.c", ZDEMO)):  # fmt: skip
        as_user(run.dev, ["tee", str(path)], input=text)
    script = (
        "set -e; cd ~/edibuild-workspace/hello-pi; g++ hello.cpp -o hello-test; ./hello-test; "
        "aarch64-linux-gnu-g++ hello.cpp -o hello-pi; cd zdemo; "
        f"cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN} >/dev/null; "
        "cmake --build build >/dev/null; "
        "qemu-aarch64-static -L /usr/aarch64-linux-gnu build/zdemo; "
        "aarch64-linux-gnu-pkg-config --variable=libdir zlib; sudo -n id -un"
    )
    said = inside(box, dev, script).split()
    assert said[:2] == ["Hello", "Pi!"] and said[2] == "zlib" and said[3].startswith("1.2.")
    assert said[4:] == ["/usr/lib/aarch64-linux-gnu", "root"]
    for made in (hello / "hello-test", hello / "hello-pi", hello / "zdemo" / "build" / "zdemo"):
        info = made.stat()
        assert (info.st_uid, info.st_gid) == (dev.uid, dev.gid), made
    assert elf_machine(hello / "hello-pi") == AARCH64
    assert elf_machine(hello / "zdemo" / "build" / "zdemo") == AARCH64
    # hello-pi on the target's root file system, as the developer on the host.
    rootfs = Path(tempfile.mkdtemp(prefix="e13-target-", dir="/tmp"))  # the user may read it
    try:
        rootfs.chmod(0o755)
        sh(["tar", "--zstd", "-xf", str(run.ws.artifacts(TARGET) / "bootstrap.tar.zst"),
            "-C", str(rootfs), "--numeric-owner"])  # fmt: skip
        ran = as_user(dev, ["qemu-aarch64-static", "-L", str(rootfs), str(hello / "hello-pi")])
        assert ran.stdout == "Hello Pi!\n"
    finally:
        shutil.rmtree(rootfs)


def test_ssh_with_the_key_and_no_password(run: Run) -> None:
    """`ssh -p PORT USER@127.0.0.1 id` answers with the key; a password is never asked."""
    dev, port = run.dev, str(run.record()["ssh"]["port"])  # type: ignore[index]
    answer = as_user(dev, ["ssh", "-i", str(dev.key), "-o", "BatchMode=yes", *SSH_OPTIONS,
                           "-p", port, f"{dev.name}@127.0.0.1", "id"])  # fmt: skip
    assert answer.stdout.startswith(f"uid={dev.uid}({dev.name}) gid={dev.gid}({dev.name})")
    askpass = run.ws.tmp / "askpass.sh"
    askpass.write_text("#!/bin/sh\necho not-the-password\n")
    askpass.chmod(0o755)
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}
    tried = sh(["runuser", "-u", dev.name, "--", "env", f"SSH_ASKPASS={askpass}",
                "SSH_ASKPASS_REQUIRE=force", "ssh", "-v", "-o", "PubkeyAuthentication=no",
                "-o", "PreferredAuthentications=password,keyboard-interactive",
                "-o", "NumberOfPasswordPrompts=1", *SSH_OPTIONS, "-p", port,
                f"{dev.name}@127.0.0.1", "id"], check=False, env=env)  # fmt: skip
    assert tried.returncode == 255
    assert "Authentications that can continue: publickey\n" in tried.stderr
    assert "Permission denied (publickey)" in tried.stderr
    assert "Next authentication method: password" not in tried.stderr


def test_apt_works_inside_the_running_container(run: Run) -> None:
    """apt through the long-lived proxy, after `doit` ended; a second run does nothing."""
    said = sh(["lxc", "exec", run.box, "--", "sh", "-c",
               "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "
               "apt-get install -y -q hello >/dev/null && hello"]).stdout  # fmt: skip
    assert said == "Hello, world!\n"
    out, seconds = run.build()
    print(f"\nno-op doit container:{PROJECT}: {seconds:.2f} s")
    assert f"-- container:{PROJECT}" in out and "building" not in out


def test_a_changed_input_keeps_the_old_container(run: Run) -> None:
    """A new workspace means a new container; the old one is kept, stopped, with the work."""
    dev, box = run.dev, run.box
    inside(box, dev, "echo my work > ~/notes.txt")
    run.ws.edit(f"{PROJECT}.yml", "container:\n", "container:\n  workspace: ~/ws2\n")
    out, seconds = run.build()
    print(f"\nreplacing the container: {seconds:.0f} s")
    kept = run.record()["kept"]
    assert isinstance(kept, dict) and kept["name"].startswith(f"{box}-old-"), out
    assert f"remove it with lxc delete {kept['name']}" in out
    state = json.loads(sh(["lxc", "list", kept["name"], "--format", "json"]).stdout)[0]
    assert state["status"] == "Stopped"
    assert "user.edibuild.project" not in state["config"]
    assert inside(box, dev, "test ! -e ~/notes.txt && test -w ~/ws2 && echo fresh") == "fresh\n"
    sh(["lxc", "start", kept["name"]])
    assert inside(kept["name"], dev, "cat ~/notes.txt") == "my work\n"
    assert (dev.home / "edibuild-workspace" / "hello-pi" / "hello.cpp").is_file()  # untouched


def test_clean_leaves_nothing_behind(run: Run, shared_cache: Path) -> None:
    """clean removes the container and its images, names the kept one, stops the proxy."""
    record = run.record()
    port = record["ssh"]["port"]  # type: ignore[index]
    kept = record["kept"]["name"]  # type: ignore[index]
    out = run.ws.doit("clean", "--forget", f"container:{PROJECT}")
    assert f"removed LXD container {run.box}" in out
    assert f"kept {kept}" in out and f"lxc delete {kept}" in out
    assert "stopped the apt proxy" in out
    sh(["lxc", "delete", "--force", kept])  # as clean said: the kept one is the developer's
    assert leftovers(run.box) == []
    assert not [a for a in leftovers("edibuild-dev-") if PROJECT in a]
    assert aptproxyd.running(aptproxyd.state_dir(shared_cache)) is None
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", int(port))) != 0  # no proxy device listens
    assert (run.dev.home / "edibuild-workspace" / "hello-pi" / "hello.cpp").is_file()
    run.ws.doit("clean", "-c", "--forget", f"container:{PROJECT}")  # import and configure's
    assert not [a for a in leftovers("edibuild-") if PROJECT in a]  # images and layers


@pytest.mark.full_pi
def test_the_emulated_container(run: Run) -> None:
    """arm64 under qemu-user (EDIBUILD_FULL_PI=1): `uname -m` is aarch64, g++ builds and
    runs natively in the shared workspace, services stay off; cold and no-op times."""
    dev = run.dev
    box = f"e13-{dev.name}-emu"
    with (run.ws.projects / f"{EMULATED}.yml").open("a") as f:
        f.write(f"container:\n  name: {box}\n")
    emu = dev.home / "edibuild-workspace" / "emu"
    try:
        out, cold = run.build(EMULATED)
        print(f"\ncold doit container:{EMULATED}: {cold:.0f} s")
        assert f"lxc exec {box} -- su -l {dev.name}" in out and "ssh -p" not in out
        as_user(dev, ["mkdir", "-p", str(emu)])
        as_user(dev, ["tee", str(emu / "hello.cpp")], input=HELLO)
        said = inside(box, dev, "set -e; uname -m; cd ~/edibuild-workspace/emu; "
                      "g++ hello.cpp -o hello-emu; ./hello-emu")  # fmt: skip
        assert said.split() == ["aarch64", "Hello", "Pi!"]
        masked = sh(["lxc", "exec", box, "--", "readlink", "/etc/systemd/system/ssh.service"])
        assert masked.stdout == "/dev/null\n"  # sshd masked: services stay off at boot
        assert elf_machine(emu / "hello-emu") == AARCH64
        assert (emu / "hello-emu").stat().st_uid == dev.uid
        _, noop = run.build(EMULATED)
        print(f"no-op doit container:{EMULATED}: {noop:.2f} s")
    finally:
        out = run.ws.doit("clean", "-c", "--forget", f"container:{EMULATED}")
        for name in sh(["lxc", "list", "--format", "csv", "-c", "n"]).stdout.split():
            if name.startswith(box):
                sh(["lxc", "delete", "--force", name], check=False)
    assert f"removed LXD container {box}" in out
    assert leftovers(box) == []
