"""The type of configuration and manifest data: what JSON (and edibuild's YAML) can hold.

Read-only containers (Sequence, Mapping) so that any list or dict of such values is Json;
code that changes data builds new dicts and lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias, Union

# A recursive alias must be a runtime expression (no `X | Y` with the names in quotes).
Json: TypeAlias = Union[bool, int, float, str, Sequence["Json"], Mapping[str, "Json"], None]  # noqa: UP007


def mapping(value: Json) -> Mapping[str, Json]:
    """`value` if it is a mapping, else an empty one (for info a stage may not have written)."""
    return value if isinstance(value, Mapping) else {}
