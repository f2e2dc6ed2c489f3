"""Names of the LXD objects edibuild makes (light: no pylxd, usable at planning time)."""

from __future__ import annotations

import re

PREFIX = "edibuild-"


def safe_name(text: str) -> str:
    """Return `text` as a valid LXD instance name part (lowercase letters, digits, -)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned or "x"
