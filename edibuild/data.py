"""The type of configuration and manifest data: what JSON (and edibuild's YAML) can hold."""

from __future__ import annotations

from typing import Any

# JSON-compatible data (dicts, lists, str, int, float, bool, None).
Json = Any
