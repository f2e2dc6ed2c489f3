"""configure's layer image from the storage pool, and its fall back to LXD's publish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edibuild.errors import CommandFailed
from edibuild.lxd.poolread import LocalFolder
from stages import configure


class Box:
    """A stopped container that records publishes."""

    name = "box"

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, *, compression: str, description: str = "") -> str:
        self.published.append(description)
        return "published"


class Backend:
    """Records imports."""

    def __init__(self) -> None:
        self.imported: list[Path] = []

    def import_unified(self, tarball: Path) -> str:
        assert tarball.exists()
        self.imported.append(tarball)
        return "imported"


class Ctx:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def scratch(self, name: str) -> Path:
        return self.tmp / name


def test_a_layer_is_imported_and_its_tarball_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write(ctx: Any, box: Any, folder: Any, target: Path, description: str = "") -> None:
        target.write_bytes(b"tar")

    monkeypatch.setattr(configure, "_write_unified", write)
    backend, box = Backend(), Box()
    folder = LocalFolder(tmp_path, None, None)
    got = configure._import(Ctx(tmp_path), backend, box, folder, "d")  # type: ignore[arg-type]
    assert got == ("imported", "storage pool") and box.published == []
    assert not backend.imported[0].exists()


def test_a_layer_that_cannot_be_written_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write(ctx: Any, box: Any, folder: Any, target: Path, description: str = "") -> None:
        target.write_bytes(b"half")
        raise CommandFailed("zstd: No space left on device")

    monkeypatch.setattr(configure, "_write_unified", write)
    backend, box = Backend(), Box()
    folder = LocalFolder(tmp_path, None, None)
    got = configure._import(Ctx(tmp_path), backend, box, folder, "desc")  # type: ignore[arg-type]
    assert got == ("published", "publish") and box.published == ["desc"] and backend.imported == []
    assert not (tmp_path / "layer.tar.zst").exists()
