"""Unit tests for edibuild.host.emulation: binfmt status parsing and architecture tables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edibuild.errors import EdibuildError
from edibuild.host import emulation

ENABLED = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def test_parse_enabled_entry_with_fix_binary_flag() -> None:
    entry = emulation.parse_binfmt_entry(ENABLED)
    assert entry.enabled
    assert entry.interpreter == "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    assert entry.flags == "PF"
    assert entry.usable


def test_disabled_entry_is_not_usable() -> None:
    entry = emulation.parse_binfmt_entry(ENABLED.replace("enabled", "disabled"))
    assert not entry.enabled
    assert not entry.usable


def test_entry_without_f_flag_is_not_usable() -> None:
    entry = emulation.parse_binfmt_entry(ENABLED.replace("flags: PF", "flags: P"))
    assert entry.enabled and entry.flags == "P"
    assert not entry.usable
    bare = emulation.parse_binfmt_entry("enabled\ninterpreter /x\n")
    assert bare.flags == "" and not bare.usable


def test_read_entry(tmp_path: Path) -> None:
    assert emulation.read_entry("qemu-aarch64", tmp_path) is None
    (tmp_path / "qemu-aarch64").write_text(ENABLED)
    entry = emulation.read_entry("qemu-aarch64", tmp_path)
    assert entry is not None and entry.usable


def test_native_architectures_need_no_emulation() -> None:
    assert not emulation.needs_emulation("amd64", "x86_64")
    assert not emulation.needs_emulation("i386", "x86_64")
    assert emulation.needs_emulation("arm64", "x86_64")
    assert emulation.needs_emulation("armhf", "x86_64")
    assert not emulation.needs_emulation("arm64", "aarch64")
    assert emulation.needs_emulation("amd64", "aarch64")


def test_qemu_names() -> None:
    assert emulation.qemu_name("arm64") == "aarch64"
    assert emulation.qemu_name("armhf") == "arm"
    assert emulation.qemu_name("ppc64el") == "ppc64le"
    with pytest.raises(EdibuildError) as info:
        emulation.qemu_name("vax")
    assert "vax" in str(info.value) and info.value.hint and "arm64" in info.value.hint


def test_ensure_emulation_does_nothing_for_native_architecture() -> None:
    native = emulation.NATIVE.get(os.uname().machine)
    if not native:
        pytest.skip(f"no native table for {os.uname().machine}")
    for architecture in sorted(native):
        assert emulation.ensure_emulation(architecture) == []
