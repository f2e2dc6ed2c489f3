"""Check the merged configuration and build the typed, frozen Bootstrap section."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from edibuild.config.plugins import NODE_SECTIONS, Where, require_plugin
from edibuild.config.project import Bootstrap
from edibuild.config.suggest import did_you_mean, expect_mapping, expect_str, expect_str_list
from edibuild.config.values import bad_character
from edibuild.data import Json
from edibuild.errors import ConfigError

TOP_LEVEL_KEYS = (
    "description", "parameters", "include", "bootstrap", "lxd", "lxd_profiles", "playbooks",
    "export", "layout", "mender", "postprocessing", "boottest", "container",
)  # fmt: skip
# Sections owned by later stages: only required to be mappings here.
OPAQUE_SECTIONS = ("lxd", "export", "layout", "mender", "boottest", "container")
BOOTSTRAP_KEYS = (
    "architecture", "suite", "mirror", "components", "variant", "packages", "keyring", "tool",
)  # fmt: skip
ARCHITECTURES = ("amd64", "arm64", "armhf", "armel", "i386", "ppc64el", "s390x", "riscv64",
                 "mips64el")  # fmt: skip
SUITES = ("buster", "bullseye", "bookworm", "trixie", "forky", "sid")
VARIANTS = ("minbase", "buildd", "required", "important", "standard")
TOOLS = ("debootstrap", "mmdebstrap")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_ARCH_ALIASES = {
    alias: f"Debian calls it {name!r}"
    for alias, name in {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "i686": "i386",
                        "ppc64le": "ppc64el", "arm": "armhf", "x86": "i386"}.items()
}  # fmt: skip
_SUITE_ALIASES = {
    alias: "use the release codename so the build does not change at the next Debian release"
    for alias in ("oldstable", "stable", "testing", "unstable")
}
# edi's sections and keys, with what edibuild calls them (edi users bring their projects).
EDI_SECTIONS = {
    "general": "edibuild has no `general` section: put edi's general.parameters under "
    "`parameters:`; compression and the container stop timeout are edibuild's own choice",
    "qemu": "edibuild has no `qemu` section: it arranges emulation with the host's "
    "qemu-user-static itself",
    "shared_folders": "edibuild shares a workspace with the development container through "
    "the `container` section",
    "lxc_templates": "edibuild has no LXC templates: write such files with a playbook",
    "lxc_profiles": "edibuild calls it `lxd_profiles`",
    "postprocessing_commands": "edibuild calls it `postprocessing` (each node is a stage "
    "with inputs and outputs)",
    "documentation_steps": "edibuild has no documentation steps: write one as a "
    "`postprocessing` stage that reads export.rootfs",
}
EDI_BOOTSTRAP_KEYS = {
    "repository": "edibuild splits edi's repository line into `mirror`, `suite` and `components`",
    "repository_key": "edibuild takes a keyring file: `keyring`",
}
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.\-]+(:[a-z0-9]+)?")
# What sources.list and debootstrap's --components can hold: no spaces, no commas.
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+/-]*")
# The characters of a URL (RFC 3986): no spaces, quotes or control characters, which
# would split or extend the sources.list line the mirror is written into.
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")
# Where `bootstrap.keyring` may also point: the keyrings Debian packages install.
HOST_KEYRINGS = (Path("/usr/share/keyrings"),)


def check_top_level(data: dict[str, Json], where: Where) -> None:
    """Reject unknown top-level keys and sections that are not mappings."""
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"unknown top-level key {key!r}",
                location=where(key),
                key=key,
                hint=EDI_SECTIONS.get(key) or did_you_mean(key, TOP_LEVEL_KEYS),
            )
    for key in (*OPAQUE_SECTIONS, *NODE_SECTIONS, "parameters", "bootstrap"):
        if key in data:
            expect_mapping(data[key], key, where(key))


def check_description(value: Json, where: Where, default: str) -> str:
    """Return the one-line description shown by `doit list`."""
    if value is None:
        return default
    text = expect_str(value, "description", where("description"), "a one-line text")
    if "\n" in text.strip():
        raise ConfigError(
            "description must be a single line",
            location=where("description"),
            key="description",
            hint="it is shown by `doit list`; put longer notes in YAML comments",
        )
    char = bad_character(text.strip())
    if char is not None:
        raise ConfigError(
            f"description holds the control character {char!r}",
            location=where("description"),
            key="description",
            hint="it is printed on terminals by `doit list`; use plain text",
        )
    return text.strip()


def bootstrap(value: Json, where: Where, dirs: tuple[Path, Path]) -> Bootstrap:
    """Validate the bootstrap section and fill in the defaults."""
    section = expect_mapping(value if value is not None else {}, "bootstrap", where("bootstrap"))
    for key in section:
        if key not in BOOTSTRAP_KEYS:
            raise ConfigError(
                f"unknown key {key!r} in bootstrap",
                location=where("bootstrap", key),
                key=f"bootstrap.{key}",
                hint=EDI_BOOTSTRAP_KEYS.get(key) or did_you_mean(key, BOOTSTRAP_KEYS),
            )
    keyring = section.get("keyring")
    if keyring is not None:
        keyring = str(require_plugin(keyring, "bootstrap.keyring", where, dirs, HOST_KEYRINGS))
    return Bootstrap(
        architecture=_choice(section, "architecture", ARCHITECTURES, _ARCH_ALIASES, where),
        suite=_choice(section, "suite", SUITES, _SUITE_ALIASES, where),
        mirror=_mirror(section.get("mirror", DEFAULT_MIRROR), where),
        components=_components(section.get("components", ["main"]), where),
        variant=_choice(section, "variant", VARIANTS, {}, where, default="minbase"),
        packages=_packages(section.get("packages", []), where),
        keyring=None if keyring is None else Path(keyring),
        tool=_choice(section, "tool", TOOLS, {}, where, default="debootstrap"),
    )


def _choice(
    section: dict[str, Json],
    key: str,
    allowed: tuple[str, ...],
    aliases: dict[str, str],
    where: Where,
    default: str | None = None,
) -> str:
    """Return section[key] if it is one of `allowed`; a missing required key is an error."""
    value = section.get(key, default)
    dotted = f"bootstrap.{key}"
    if value is None:
        raise ConfigError(
            "is required but not set",
            location=where("bootstrap"),
            key=dotted,
            hint=f"add `{key}: ...` under bootstrap ({', '.join(allowed)})",
        )
    text = expect_str(value, dotted, where("bootstrap", key), f"one of {', '.join(allowed)}")
    if text in allowed:
        return text
    hint = did_you_mean(text, allowed)
    if text in aliases:
        hint = f"{aliases[text]}; {hint}"
    location = where("bootstrap", key)
    raise ConfigError(f"unknown {key} {text!r}", location=location, key=dotted, hint=hint)


def _mirror(value: Json, where: Where) -> str:
    """Return the mirror URL (http, https or file)."""
    location = where("bootstrap", "mirror")
    url = expect_str(value, "bootstrap.mirror", location, "a mirror URL")
    if _URL_CHARS.fullmatch(url) is None:
        bad = next((c for c in url if _URL_CHARS.fullmatch(c) is None), "")
        raise ConfigError(
            f"{url!r} holds {bad!r}, which a mirror URL cannot contain",
            location=location,
            key="bootstrap.mirror",
            hint="it is written into the image's sources.list: no spaces, quotes, newlines "
            "or other control characters (percent-encode them)",
        )
    parts = urlsplit(url)
    web = parts.scheme in ("http", "https") and parts.netloc
    if web or (parts.scheme == "file" and parts.path):
        return url
    raise ConfigError(
        f"{url!r} is not an http, https or file URL",
        location=location,
        key="bootstrap.mirror",
        hint=f"e.g. {DEFAULT_MIRROR} or file:///srv/mirror/debian",
    )


def _components(value: Json, where: Where) -> tuple[str, ...]:
    """Return the archive components (main, contrib, non-free, non-free-firmware)."""
    location = where("bootstrap", "components")
    components = expect_str_list(value, "bootstrap.components", location, "archive components")
    if not components:
        raise ConfigError(
            "bootstrap.components must not be empty",
            location=location,
            key="bootstrap.components",
            hint="use [main] (add contrib, non-free, non-free-firmware as needed)",
        )
    for index, name in enumerate(components):
        if _COMPONENT.fullmatch(name) is None:
            raise ConfigError(
                f"{name!r} is not an archive component",
                location=where("bootstrap", "components", str(index)),
                key="bootstrap.components",
                hint="components are words like main, contrib, non-free-firmware "
                "(letters, digits, . _ + / -; one per item)",
            )
    return components


def _packages(value: Json, where: Where) -> tuple[str, ...]:
    """Return the extra packages to bootstrap, checking Debian package name syntax."""
    location = where("bootstrap", "packages")
    packages = expect_str_list(value, "bootstrap.packages", location, "package names")
    for index, name in enumerate(packages):
        if _PACKAGE.fullmatch(name) is None:
            raise ConfigError(
                f"{name!r} is not a Debian package name",
                location=where("bootstrap", "packages", str(index)),
                key="bootstrap.packages",
                hint="names are lower case letters, digits and + - . (one package per item)",
            )
    return packages
