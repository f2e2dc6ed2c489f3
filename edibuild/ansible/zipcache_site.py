"""A bytecode cache for modules imported from zip files, for Ansible's module runs.

Configure pushes this file into the build container as /run/edibuild-pyc/sitecustomize.py
and the connection puts that folder on every module run's PYTHONPATH. Ansible runs each
module from a fresh zip (AnsiballZ), and Python never caches bytecode for a zip: every
task compiles `ansible.module_utils.basic` and the rest again (Python 3.11 even twice, once
to name the file and once to load it). Under qemu-user that is most of a task's second;
here each source is compiled once per container boot and kept, keyed by its bytes,
Python's magic number and -O level, in a tmpfs that never reaches the image.

It runs inside the container, under the container's Python (3.8 or newer; older ones
are left alone): standard library only, and any failure falls back to plain zipimport.
On the host, importing it does nothing.
"""

from __future__ import annotations

import os
import sys
import zipimport

TYPE_CHECKING = False  # typing is not imported: every module run in the container pays for it
if TYPE_CHECKING:
    from types import CodeType, ModuleType

CACHE = "cache"  # below this file's folder, 0700


def cache_dir() -> str:
    """The folder of cached code objects, beside this file."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), CACHE)


def compiled(source: bytes, path: str, folder: str) -> CodeType:
    """The code object of `source` (named `path`), from the cache or compiled and kept."""
    import _frozen_importlib_external as bootstrap  # loaded already; importlib.util is not
    import _imp
    import marshal

    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # hashlib loads OpenSSL
    except ImportError:
        from hashlib import sha256

    # Keyed as a .pyc is checked: the interpreter's magic number and -O level, the source.
    key = bootstrap.MAGIC_NUMBER + bytes([sys.flags.optimize]) + source
    digest = sha256(key).hexdigest()
    entry = os.path.join(folder, digest)
    try:
        with open(entry, "rb") as cached:
            code: CodeType = marshal.loads(cached.read())
        # Tracebacks and warnings name this run's zip, not the one it was compiled from.
        _imp._fix_co_filename(code, path)  # type: ignore[attr-defined]
        return code
    except (OSError, EOFError, ValueError, TypeError):
        pass
    source = source.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # as zipimport does
    code = compile(source, path, "exec", dont_inherit=True)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        partial = f"{entry}.{os.getpid()}.tmp"
        with open(partial, "wb") as out:
            out.write(marshal.dumps(code))
        os.replace(partial, entry)
    except OSError:
        pass  # a cache that cannot be written only costs time
    return code


class CachingZipImporter(zipimport.zipimporter):
    """zipimport, with the compiled code of source modules kept in `cache_dir()`."""

    def _source_path(self, fullname: str) -> str:
        """The path zipimport gives the module's source (archive/prefix/name[.py])."""
        base = fullname.rpartition(".")[2]
        inner = f"{base}/__init__.py" if self.is_package(fullname) else f"{base}.py"
        return os.path.join(self.archive, self.prefix + inner)

    def _source(self, fullname: str, *, keep: bool) -> tuple[bytes, str] | None:
        """The module's source bytes and path, or None (bytecode only, or unreadable).

        The import system asks for the file name first, then for the code: with `keep`,
        what was read from the zip waits for the second call, so each source is inflated once.
        """
        read: dict[str, tuple[bytes, str]] = self.__dict__.setdefault("_edibuild_read", {})
        found = read.pop(fullname, None)
        if found is None:
            try:
                path = self._source_path(fullname)
                found = (self.get_data(path), path)
            except (OSError, ImportError):
                return None
        if keep:
            read[fullname] = found
        return found

    def get_filename(self, fullname: str) -> str:
        """The module's source path, without compiling it (zipimport compiles to tell)."""
        found = self._source(fullname, keep=True)
        return found[1] if found else str(super().get_filename(fullname))

    def get_code(self, fullname: str) -> CodeType:
        """The module's code object, compiled at most once per source."""
        found = self._source(fullname, keep=False)
        if found is None:
            code: CodeType = super().get_code(fullname)
            return code
        return compiled(found[0], found[1], cache_dir())

    def create_module(self, spec: object) -> None:
        """The default module object."""
        return None

    def exec_module(self, module: ModuleType) -> None:
        """Run the module's (cached) code in its namespace."""
        exec(self.get_code(module.__name__), module.__dict__)


def _chain() -> None:
    """Run the sitecustomize this one shadows (Debian ships one), as Python would have."""
    import _frozen_importlib as bootstrap
    import _frozen_importlib_external as external

    here = os.path.dirname(os.path.abspath(__file__))
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = external.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        module = bootstrap.module_from_spec(spec)
        spec.loader.exec_module(module)


def install() -> None:
    """Put the caching importer in the place of zipimport's path hook (Python 3.8 or newer)."""
    hooks = sys.path_hooks
    if sys.version_info < (3, 8) or CachingZipImporter in hooks:
        return
    if zipimport.zipimporter in hooks:
        hooks[hooks.index(zipimport.zipimporter)] = CachingZipImporter
    else:
        hooks.insert(0, CachingZipImporter)


if __name__ == "sitecustomize":  # in the container; an import on the host does nothing
    try:  # noqa: SIM105 - contextlib would cost every module run its import
        install()
    except Exception:  # without the cache, modules compile as they always did
        pass
    _chain()
