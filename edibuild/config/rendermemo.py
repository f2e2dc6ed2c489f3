"""Rendered project files remembered across runs: a no-op then needs no Jinja2 (~15 ms).

An entry's key is the digest of everything the rendered text depends on: the template
text, its file name, the variables, edibuild's rendering code and the installed Jinja2.
The memo lives in edibuild's own state folder, holds at most MAX_ENTRIES entries (the
most recently used first) and is written whole and atomically, and only when the caller
saves it after the configuration proved valid. An unreadable memo is an empty one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

from edibuild.config.render import Rendered
from edibuild.data import Json
from edibuild.store.fsutil import read_json, write_atomic

FORMAT = 1
MAX_ENTRIES = 512
_CODE = (Path(__file__).with_name("render.py"), Path(__file__).with_name("sandbox.py"))


class RenderMemo:
    """The renders recorded in one file, and those this run adds or uses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries = _read(path)
        self._used: dict[str, Rendered] = {}
        self._added = False

    @cached_property
    def _salt(self) -> bytes:
        """What the rendering code and Jinja2 are: another version renders afresh."""
        digest = hashlib.sha256(f"format {FORMAT}\n".encode())
        for code in _CODE:
            digest.update(code.read_bytes())
        spec = importlib.util.find_spec("jinja2")  # where it is installed, not an import
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        if origin is not None and origin.is_file():
            info = origin.stat()
            digest.update(f"{origin}\n{info.st_size}\n{info.st_mtime_ns}\n".encode())
        return digest.digest()

    def key(self, text: str, file: Path, variables: Mapping[str, Json]) -> str | None:
        """The entry key of rendering `text` with `variables`; None if they are not JSON."""
        try:
            values = json.dumps(variables, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        digest = hashlib.sha256(self._salt)
        for part in (str(file), values, text):
            digest.update(b"\0" + part.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def get(self, key: str) -> Rendered | None:
        """The remembered render, if any."""
        found = self._used.pop(key, None) or self._entries.get(key)
        if found is not None:
            self._used[key] = found  # last used last
        return found

    def put(self, key: str, rendered: Rendered) -> None:
        """Remember a render of this run."""
        self._used.pop(key, None)
        self._used[key] = rendered
        self._added = True

    def save(self) -> None:
        """Write the memo (this run's renders first) if this run rendered anything new."""
        if not self._added:
            return
        recent = dict(reversed(self._used.items()))
        entries = {**recent, **{k: v for k, v in self._entries.items() if k not in recent}}
        kept = dict(list(entries.items())[:MAX_ENTRIES])
        data = {
            "format": FORMAT,
            "entries": {k: {"text": r.text, "lines": list(r.lines)} for k, r in kept.items()},
        }
        try:
            write_atomic(self.path, json.dumps(data, separators=(",", ":")).encode())
        except OSError:  # a memo not written is only a slower next run
            return
        self._entries, self._added = kept, False


def _read(path: Path) -> dict[str, Rendered]:
    """The entries of a memo file; empty when it is missing, unreadable or malformed."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    entries = data.get("entries")
    found: dict[str, Rendered] = {}
    for key, entry in entries.items() if isinstance(entries, dict) else ():
        text = entry.get("text") if isinstance(entry, dict) else None
        lines = entry.get("lines") if isinstance(entry, dict) else None
        if isinstance(text, str) and isinstance(lines, list) and all(type(n) is int for n in lines):
            found[key] = Rendered(text, tuple(lines))
    return found
