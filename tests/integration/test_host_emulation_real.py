"""Integration test: make the kernel run arm64 binaries through qemu-user-static, for real."""

from __future__ import annotations

import os
import subprocess

import pytest

from edibuild.host import emulation
from tests.conftest import require, require_root, require_tool

pytestmark = pytest.mark.integration


def test_arm64_binary_runs_after_ensure_emulation() -> None:
    require(os.uname().machine == "x86_64", "an x86_64 host (arm64 must be foreign)")
    require_root()
    require_tool("update-binfmts", "arch-test", "qemu-aarch64-static")
    done = emulation.ensure_emulation("arm64")
    assert all(isinstance(sentence, str) and sentence for sentence in done)
    entry = emulation.read_entry("qemu-aarch64")
    assert entry is not None and entry.enabled and "F" in entry.flags
    # A statically linked arm64 program: the kernel must hand it to qemu to run it.
    helper = emulation.ARCH_TEST_HELPERS / "arm64"
    header = helper.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[18:20] == b"\xb7\x00"  # e_machine: EM_AARCH64
    proc = subprocess.run([str(helper)], capture_output=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, b"ok")
    assert subprocess.run(["arch-test", "arm64"], capture_output=True).returncode == 0
    assert emulation.ensure_emulation("arm64") == []  # second call: nothing left to do
