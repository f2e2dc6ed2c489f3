"""bench/repro.py's comparison of two exported tarballs: which members differ, and why."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from bench import repro

Spec = dict[str, tuple[bytes, int, int, int]]  # name -> (data, mode, uid, mtime)

BASE: Spec = {
    "etc/hostname": (b"edibuild\n", 0o644, 0, 1704067200),
    "etc/shadow": (b"root:*:19723:0:99999:7:::\n", 0o640, 0, 1704067200),
    "usr/bin/tool": (b"\x7fELF\0\0\1", 0o755, 0, 1704067200),
}


def _write(path: Path, spec: Spec, order: list[str] | None = None) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in order or sorted(spec):
            data, mode, uid, mtime = spec[name]
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.uid, info.mtime = len(data), mode, uid, mtime
            tar.addfile(info, io.BytesIO(data))
    return path


def _diff(tmp_path: Path, changed: Spec, order: list[str] | None = None) -> list[str]:
    a = repro.read_archive(_write(tmp_path / "a.tar", BASE))
    b = repro.read_archive(_write(tmp_path / "b.tar", changed, order))
    return [d.line() for d in repro.compare(a, b)]


def test_identical_archives_have_no_difference(tmp_path: Path) -> None:
    """The same members in the same order: nothing reported, same digest."""
    a = repro.read_archive(_write(tmp_path / "a.tar", BASE))
    b = repro.read_archive(_write(tmp_path / "b.tar", BASE))
    assert repro.compare(a, b) == []
    assert a.sha256 == b.sha256
    assert set(a.members) == set(BASE)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"etc/hostname": (b"other\n", 0o644, 0, 1704067200)}, "etc/hostname: content"),
        ({"etc/hostname": (b"edibuild\n", 0o600, 0, 1704067200)}, "etc/hostname: mode"),
        ({"etc/hostname": (b"edibuild\n", 0o644, 1000, 1704067200)}, "etc/hostname: owner"),
        ({"etc/hostname": (b"edibuild\n", 0o644, 0, 1)}, "etc/hostname: mtime"),
        ({"etc/hostname": (b"x", 0o600, 0, 1)}, "etc/hostname: content, mode, mtime"),
    ],
)
def test_each_member_difference_has_its_reason(tmp_path: Path, change: Spec, expected: str) -> None:
    """One changed member, reported once, with every field that differs."""
    assert _diff(tmp_path, {**BASE, **change}) == [expected]


def test_members_of_one_archive_only(tmp_path: Path) -> None:
    """A member missing on one side is named with the side that has it."""
    spec = {k: v for k, v in BASE.items() if k != "etc/shadow"}
    spec["var/log/journal/abc"] = (b"", 0o644, 0, 1704067200)
    assert _diff(tmp_path, spec) == ["etc/shadow: only in A", "var/log/journal/abc: only in B"]


def test_same_members_in_another_order(tmp_path: Path) -> None:
    """Equal members but different bytes: the archive itself is reported."""
    order = sorted(BASE, reverse=True)
    assert _diff(tmp_path, BASE, order) == ["(archive): member order"]


def test_first_difference_names_the_line_or_byte() -> None:
    """Text shows the first differing line; binary the first differing offset."""
    text = repro.first_difference(b"a\nroot:*:19723:\n", b"a\nroot:*:20412:\n")
    assert "19723" in text and "20412" in text
    assert "byte 2" in repro.first_difference(b"\0\1\2\3", b"\0\1\5\3")


def test_report_prints_the_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The last line says identical yes/no and how many files differ."""
    a = _write(tmp_path / "a.tar", BASE)
    b = _write(tmp_path / "b.tar", {**BASE, "etc/hostname": (b"x\n", 0o644, 0, 1704067200)})
    assert repro.report(a, a, show_details=False)
    assert capsys.readouterr().out.splitlines()[-1] == "identical: yes, 0 differing files"
    assert not repro.report(a, b, show_details=True)
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "identical: no, 1 differing files"
    assert any("etc/hostname: A: 'edibuild' B: 'x'" in line for line in out)
