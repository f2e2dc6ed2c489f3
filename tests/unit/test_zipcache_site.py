"""The bytecode cache for modules imported from zip files (edibuild/ansible/zipcache_site.py).

Each test runs a real Python with the cache installed the way the build container has it
(a folder on PYTHONPATH holding it as sitecustomize.py) and imports from a real zip, as
Ansible's module runs do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edibuild.ansible import bytecode

PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import pkg.mod as m
print(type(m.__loader__).__name__)
print(m.__file__)
print(m.where.__code__.co_filename)
print(m.VALUE)
try:
    m.fail()
except ZeroDivisionError as exc:
    print(exc.__traceback__.tb_next.tb_frame.f_code.co_filename)
"""


def make_zip(path: Path, value: str) -> Path:
    """A zip holding package `pkg` with module `mod` (VALUE, where(), fail())."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/__init__.py", "")
        z.writestr(
            "pkg/mod.py",
            f"VALUE = {value!r}\ndef where():\n    return 1\ndef fail():\n    return 1 / 0\n",
        )
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder with the cache as sitecustomize.py, as configure installs it."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "sitecustomize.py").write_bytes(bytecode.site_source())
    return folder


def probe(archive: Path, *paths: Path, flags: tuple[str, ...] = ()) -> list[str]:
    """Import pkg.mod from `archive` in a fresh Python with `paths` on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    done = subprocess.run(
        [sys.executable, *flags, "-c", PROBE, str(archive)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr == ""
    return done.stdout.splitlines()


def test_a_zip_module_compiles_once_and_names_the_zip_it_came_from(
    tmp_path: Path, site: Path
) -> None:
    first = make_zip(tmp_path / "one.zip", "a")
    assert probe(first, site) == [
        "CachingZipImporter",
        f"{first}/pkg/mod.py",
        f"{first}/pkg/mod.py",
        "a",
        f"{first}/pkg/mod.py",
    ]
    cached = sorted((site / "cache").iterdir())
    assert len(cached) == 2  # pkg/__init__.py and pkg/mod.py
    stamps = [p.stat().st_mtime_ns for p in cached]
    # The same sources in another zip (Ansible makes a new one per task): served from the
    # cache, with this zip's names in the code and in tracebacks.
    second = make_zip(tmp_path / "two.zip", "a")
    assert probe(second, site)[1:] == [f"{second}/pkg/mod.py"] * 2 + ["a", f"{second}/pkg/mod.py"]
    assert sorted((site / "cache").iterdir()) == cached
    assert [p.stat().st_mtime_ns for p in cached] == stamps


def test_changed_source_is_compiled_again(tmp_path: Path, site: Path) -> None:
    assert probe(make_zip(tmp_path / "one.zip", "a"), site)[3] == "a"
    assert probe(make_zip(tmp_path / "two.zip", "b"), site)[3] == "b"
    assert len(list((site / "cache").iterdir())) == 3  # one __init__, two versions of mod


def test_code_compiled_with_o_is_kept_apart(tmp_path: Path, site: Path) -> None:
    archive = make_zip(tmp_path / "one.zip", "a")
    probe(archive, site)
    assert probe(archive, site, flags=("-O",))[3] == "a"
    assert len(list((site / "cache").iterdir())) == 4  # two sources, each without and with -O


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path: Path, site: Path) -> None:
    (site / "cache").write_text("not a folder")
    assert probe(make_zip(tmp_path / "one.zip", "a"), site)[:4] == [
        "CachingZipImporter",
        f"{tmp_path}/one.zip/pkg/mod.py",
        f"{tmp_path}/one.zip/pkg/mod.py",
        "a",
    ]


def test_a_damaged_cache_entry_is_compiled_again(tmp_path: Path, site: Path) -> None:
    archive = make_zip(tmp_path / "one.zip", "a")
    probe(archive, site)
    for entry in (site / "cache").iterdir():
        entry.write_bytes(b"\x00garbage")
    assert probe(archive, site)[3] == "a"


def test_without_the_cache_zipimport_is_untouched(tmp_path: Path) -> None:
    assert probe(make_zip(tmp_path / "one.zip", "a"))[0] == "zipimporter"


def test_the_shadowed_sitecustomize_still_runs(tmp_path: Path, site: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    marker = tmp_path / "ran"
    (other / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    assert probe(make_zip(tmp_path / "one.zip", "a"), site, other)[0] == "CachingZipImporter"
    assert marker.exists()


def test_importing_it_on_the_host_installs_nothing() -> None:
    hooks = list(sys.path_hooks)
    import edibuild.ansible.zipcache_site as site_module

    assert site_module.CachingZipImporter not in sys.path_hooks
    assert sys.path_hooks == hooks
