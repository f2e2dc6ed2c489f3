"""Checks of configuration values for what they are: text, booleans, whole numbers, names.

Text that edibuild writes into files inside the image (sources.list, /etc/hostname,
/etc/passwd through Ansible, the sfdisk script, artifact_info) or shows on a terminal
must not carry control characters: a newline in a mirror URL would add a line to
sources.list. Each function returns the checked value or raises a ConfigError naming
the key and its location.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping

from edibuild.data import Json
from edibuild.errors import ConfigError, Location

# Unicode categories no configuration text may hold: control characters (newline, tab,
# escape), format characters (bidi overrides, zero-width), line and paragraph separators.
_FORBIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")
HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
HOSTNAME_MAX = 253
# Debian's adduser default NAME_REGEX (without the trailing $ for Samba machine accounts).
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
EPOCH_MAX = 2**32 - 1  # what every file system of an image can store (ext4, tar; 2106)


def _describe(value: Json) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "a mapping", type(None): "nothing (null)"}
    return names.get(type(value), type(value).__name__)


def bad_character(text: str) -> str | None:
    """Return the first control, format or line-separator character of `text`, or None."""
    for char in text:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return char
    return None


def text(
    value: Json,
    *,
    key: str,
    location: Location | None,
    what: str = "a text",
    forbidden: str = "",
    hint: str | None = None,
) -> str:
    """Return a non-empty one-line string without control characters or `forbidden` ones."""
    if not isinstance(value, str) or not value:
        got = "not empty" if value == "" else f"got {_describe(value)}"
        raise ConfigError(
            f"must be {what}, {got}",
            location=location,
            key=key,
            hint=hint or "quote the value if YAML reads it as something else",
        )
    char = bad_character(value)
    if char is None:
        char = next((c for c in value if c in forbidden), None)
    if char is not None:
        raise ConfigError(
            f"{value!r} holds the character {char!r}, which {what} cannot contain",
            location=location,
            key=key,
            hint=hint or "remove it; newlines, tabs and other control characters are refused",
        )
    return value


def boolean(value: Json, *, key: str, location: Location | None, hint: str | None = None) -> bool:
    """Return `value` if it is true or false (not "yes", not 1)."""
    if isinstance(value, bool):
        return value
    raise ConfigError(
        f"must be true or false, got {_describe(value)} ({value!r})",
        location=location,
        key=key,
        hint=hint or "write true or false without quotes",
    )


def whole_number(
    value: Json, *, key: str, location: Location | None, minimum: int, maximum: int
) -> int:
    """Return `value` if it is an integer (not a boolean, not a float) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"must be a whole number, got {_describe(value)} ({value!r})",
            location=location,
            key=key,
            hint="write digits only, without quotes or a decimal point",
        )
    if not minimum <= value <= maximum:
        raise ConfigError(
            f"{value} is out of range",
            location=location,
            key=key,
            hint=f"use a number from {minimum} to {maximum}",
        )
    return value


def epoch(value: Json, *, key: str, location: Location | None) -> int:
    """Return a SOURCE_DATE_EPOCH (seconds since 1970, as a number or digits in a string)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return whole_number(value, key=key, location=location, minimum=0, maximum=EPOCH_MAX)


def hostname(value: Json, *, key: str, location: Location | None) -> str:
    """Return a host name: dot-separated labels of letters, digits and inner hyphens."""
    name = text(value, key=key, location=location, what="a host name")
    labels = name.split(".")
    if len(name) > HOSTNAME_MAX or not all(HOSTNAME_LABEL.fullmatch(lab) for lab in labels):
        raise ConfigError(
            f"{name!r} is not a valid host name",
            location=location,
            key=key,
            hint="use letters, digits and '-' (not first or last), labels of at most 63 "
            "characters separated by dots",
        )
    return name


def user_name(value: Json, *, key: str, location: Location | None) -> str:
    """Return a Unix user name as Debian's adduser accepts it by default."""
    name = text(value, key=key, location=location, what="a user name")
    if USER_NAME.fullmatch(name) is None:
        raise ConfigError(
            f"{name!r} is not a valid user name",
            location=location,
            key=key,
            hint="use lower-case letters, digits, '_' and '-', starting with a letter or '_', "
            "at most 32 characters",
        )
    return name


Where = Callable[..., Location]


def _password_hash(value: Json, *, key: str, location: Location | None) -> Json:
    return text(
        value,
        key=key,
        location=location,
        what="a password hash",
        forbidden=": ",
        hint="give the hash `mkpasswd -m sha-512` prints (it goes into /etc/shadow)",
    )


def _boolean(value: Json, *, key: str, location: Location | None) -> Json:
    return boolean(value, key=key, location=location)


# Parameters whose meaning edibuild knows: its shipped playbooks write them into the image
# (/etc/hostname, /etc/hosts, /etc/passwd, /etc/shadow, sources.list).
KNOWN_PARAMETERS: Mapping[str, Callable[..., Json]] = {
    "hostname": hostname,
    "default_user_name": user_name,
    "default_user_password": _password_hash,
    "apt_security": _boolean,
}


def check_parameters(parameters: Json, where: Where, *keys: str) -> None:
    """Check the parameters edibuild knows (KNOWN_PARAMETERS) in a `parameters` mapping."""
    if not isinstance(parameters, Mapping):
        return
    for name, check in KNOWN_PARAMETERS.items():
        if name in parameters:
            path = (*keys, name)
            check(parameters[name], key=".".join(path), location=where(*path))
