"""Paths stay inside: where project files may point, and the files a plugin folder adds.

Every path a project file names (includes, playbooks, LXD profiles, keyrings, user
stage scripts) is relative, and resolves, symlinks included, inside the project's folder
or edibuild's shipped `projects/` folder (the *roots*); anything else is refused, so
planning reads nothing else. A playbook's folder adds every file below it to the
up-to-date check of `configure` (templates, files, roles), bounded by MAX_FOLDER_FILES
files and MAX_FOLDER_BYTES bytes; a symlink out of the roots, a symlinked folder or a
special file (a FIFO would block every doit command) in it is an error, never skipped.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path

from edibuild.errors import ConfigError, Location

MAX_FOLDER_FILES = 1000
MAX_FOLDER_BYTES = 256 * 1024 * 1024
# A plugin directly in one of these folders counts alone (its siblings are other plugins).
SHARED_FOLDERS = ("projects", "playbooks")


# While projects load (`remembering`), resolved paths and folder listings are kept: 50
# projects naming the same plugins resolve and list them once.
_MEMO: ContextVar[dict[tuple[str, object], object] | None] = ContextVar("paths", default=None)


@contextlib.contextmanager
def remembering() -> Iterator[None]:
    """Remember resolved paths and plugin folder listings for the block (one load)."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def real(path: Path) -> Path:
    """`path.resolve()`, remembered inside a `remembering()` block."""
    memo = _MEMO.get()
    if memo is None:
        return path.resolve()
    found = memo.get(("real", path))
    if found is None:
        found = memo[("real", path)] = path.resolve()
    assert isinstance(found, Path)
    return found


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """True when `path` (already resolved) lies in, or is, one of the (resolved) roots."""
    return any(path.is_relative_to(root) for root in roots)


def find_inside(
    entry: str,
    bases: Sequence[Path],
    roots: Sequence[Path],
    *,
    what: str,
    key: str,
    location: Location,
    host_roots: Sequence[Path] = (),
) -> Path | None:
    """Resolve the relative path `entry` against each base in turn; None when no file.

    Raises a ConfigError when `entry` is absolute, or leads (by `..` or a symlink)
    outside the roots: it is never looked at. An absolute `entry` is taken only inside
    `host_roots` (the host's keyring folder for `bootstrap.keyring`).
    """
    real_roots = [real(root) for root in roots]
    shown = ", ".join(dict.fromkeys(str(root) for root in real_roots))
    if host_roots and Path(entry).is_absolute():
        return _host_file(entry, host_roots, what=what, key=key, location=location)
    if not entry or Path(entry).is_absolute() or "\0" in entry:
        raise ConfigError(
            f"{what} {entry!r} must be a relative path",
            location=location,
            key=key,
            hint=f"name a file inside {shown}, relative to the project's folder",
        )
    escapes: list[Path] = []
    for base in bases:
        candidate = base / entry
        if not inside(Path(os.path.normpath(real(base) / entry)), real_roots):
            escapes.append(Path(os.path.normpath(candidate)))  # never looked at
            continue
        if candidate.is_file():
            target = real(candidate)
            if not inside(target, real_roots):
                raise _outside(what, entry, target, shown, location, key)
            return target
    if escapes and len(escapes) == len(bases):
        raise _outside(what, entry, escapes[0], shown, location, key)
    return None


def _host_file(
    entry: str, host_roots: Sequence[Path], *, what: str, key: str, location: Location
) -> Path | None:
    """An absolute path that must resolve inside one of `host_roots`; None when missing."""
    path = Path(os.path.normpath(entry))
    real_roots = [real(root) for root in host_roots]
    shown = ", ".join(str(root) for root in host_roots)
    if "\0" in entry or not inside(path, host_roots):
        raise ConfigError(
            f"{what} {entry!r} is outside the project and {shown}",
            location=location,
            key=key,
            hint=f"name a file relative to the project's folder, or one in {shown}",
        )
    if not path.is_file():
        return None
    resolved = real(path)
    if not inside(resolved, real_roots):
        raise _outside(what, entry, resolved, shown, location, key)
    return resolved


def _outside(
    what: str, entry: str, target: Path, shown: str, location: Location, key: str
) -> ConfigError:
    return ConfigError(
        f"{what} {entry!r} leads outside the project ({target})",
        location=location,
        key=key,
        hint=f"plugins and includes must be files inside {shown}; copy the file there "
        "(symlinks are followed and checked too)",
    )


def plugin_folder(plugin: Path, roots: Sequence[Path]) -> Path | None:
    """The folder whose files a plugin may read, or None when the plugin counts alone."""
    folder = plugin.parent
    real_roots = [real(root) for root in roots]
    if folder.name in SHARED_FOLDERS or real(folder) in real_roots:
        return None
    return folder


def _plugin_file_size(
    path: Path, real_roots: Sequence[Path], refuse: Callable[[str, str], ConfigError]
) -> int:
    """The size of a file of a plugin folder; refused unless a regular file inside the roots."""
    try:
        info = path.stat()
    except OSError as error:
        raise refuse(
            f"{path} cannot be read ({error.strerror})", "remove the broken link"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise refuse(
            f"{path} is not a regular file",
            "remove it: a plugin folder holds files and folders only",
        )
    if path.is_symlink() and not inside(real(path), real_roots):
        raise refuse(
            f"{path} is a symlink leading outside the project ({real(path)})",
            "copy the file into the plugin's folder",
        )
    return info.st_size


def folder_files(
    folder: Path, roots: Sequence[Path], *, key: str, location: Location
) -> tuple[Path, ...]:
    """Every file below `folder`, sorted; ConfigError past the bounds or on odd entries."""
    memo = _MEMO.get()
    if memo is None:
        return _folder_files(folder, roots, key=key, location=location)
    name = ("folder", (folder, tuple(roots)))
    found = memo.get(name)
    if found is None:
        found = memo[name] = _folder_files(folder, roots, key=key, location=location)
    assert isinstance(found, tuple)
    return found


def _folder_files(
    folder: Path, roots: Sequence[Path], *, key: str, location: Location
) -> tuple[Path, ...]:
    if not folder.is_dir():
        return ()
    real_roots = [real(root) for root in roots]
    found: list[Path] = []
    total = 0

    def refuse(message: str, hint: str) -> ConfigError:
        return ConfigError(message, location=location, key=key, hint=hint)

    def failed(error: OSError) -> None:
        raise refuse(f"cannot list {error.filename}: {error.strerror}", "make it readable")

    for top, dirs, names in os.walk(folder, onerror=failed):
        dirs.sort()
        for name in dirs:
            if os.path.islink(os.path.join(top, name)):
                raise refuse(
                    f"{os.path.join(top, name)} is a symlink to a folder",
                    "plugin folders are read without following folder links; "
                    "copy the folder instead",
                )
        for name in sorted(names):
            path = Path(top, name)
            total += _plugin_file_size(path, real_roots, refuse)
            found.append(path)
            if len(found) > MAX_FOLDER_FILES or total > MAX_FOLDER_BYTES:
                raise refuse(
                    f"the plugin folder {folder} holds more than {MAX_FOLDER_FILES} files or "
                    f"{MAX_FOLDER_BYTES // (1024 * 1024)} MiB; every file in it is an input "
                    "of configure and is checked on every doit command",
                    "move the playbook into a folder of its own (a playbook directly in a "
                    "`playbooks/` folder counts alone)",
                )
    return tuple(found)
