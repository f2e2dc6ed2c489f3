"""The digest of what a YAML file says, not of its bytes: comments and layout do not count.

A playbook is read by Ansible as YAML, so an edit of its comments, blank lines,
indentation, quoting that does not change a value's type, or flow versus block style
changes nothing it does. `yaml_digest` hashes the parser's event stream instead of the
bytes: per node its kind, its tag (explicit, or resolved the way a YAML loader resolves
it: a plain `yes` is a bool, a quoted 'yes' a string), its scalar value (after folding and
escapes), and anchor and alias names. Aliases are hashed as references (never expanded),
so the cost is linear in the file's size whatever it says. A file that is not valid YAML
is hashed by its bytes (Ansible will refuse it anyway, and any edit counts).

Files a playbook *copies or renders* (templates, files) keep their byte digests: their
bytes are what ends up in the image.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

from edibuild.store.fsutil import sha256_file

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVER = yaml.resolver.Resolver()
# Bump when what the digest covers changes (so keys made the old way are not reused).
FORMAT = "edibuild-yaml-1"

# (path, size, mtime_ns, inode) -> digest, so 50 projects sharing a playbook parse it once.
_memo: dict[tuple[str, int, int, int], str] = {}


def _resolve(kind: type[yaml.Node], value: str | None, implicit: object) -> str:
    """The tag a YAML loader gives an untagged node (PyYAML's resolver is untyped)."""
    return str(_RESOLVER.resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


def _event_record(event: yaml.Event) -> list[object] | None:
    """What one parser event contributes to the digest (None: presentation only)."""
    kind = type(event).__name__.removesuffix("Event")
    anchor = getattr(event, "anchor", None)
    if isinstance(event, yaml.ScalarEvent):
        tag = event.tag
        if tag is None or tag == "!":
            tag = _resolve(yaml.ScalarNode, event.value, event.implicit)
        return [kind, tag, event.value, anchor]
    if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
        tag = event.tag
        if tag is None or tag == "!":
            mapping = isinstance(event, yaml.MappingStartEvent)
            tag = _resolve(yaml.MappingNode if mapping else yaml.SequenceNode, None, event.implicit)
        return [kind, tag, anchor]
    if isinstance(event, yaml.AliasEvent):
        return [kind, anchor]
    if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
        return [kind]
    if isinstance(event, yaml.DocumentStartEvent):
        return [kind]  # `---` or not, %YAML/%TAG directives: already applied to the tags
    return None  # stream start and end, document end


def yaml_text_digest(text: bytes) -> str:
    """The digest of what YAML `text` says; of its bytes when it is not valid YAML."""
    digest = hashlib.sha256(FORMAT.encode() + b"\n")
    try:
        for event in yaml.parse(text, Loader=_Loader):
            record = _event_record(event)
            if record is not None:
                digest.update(json.dumps(record, ensure_ascii=False).encode() + b"\n")
    except (yaml.YAMLError, UnicodeDecodeError, ValueError):
        return hashlib.sha256(b"edibuild-bytes\n" + text).hexdigest()
    return digest.hexdigest()


def yaml_digest(path: Path) -> str:
    """The digest of what the YAML file `path` says (memoised per size, mtime and inode)."""
    st = path.stat()
    stamp = (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    found = _memo.get(stamp)
    if found is None:
        found = _memo[stamp] = yaml_text_digest(path.read_bytes())
    return found


def file_digest(path: Path, parsed: bool) -> str:
    """A plugin file's digest: what it says when Ansible parses it (`parsed`), else its bytes."""
    return yaml_digest(path) if parsed else sha256_file(path)
