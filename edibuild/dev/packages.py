"""Do the target libraries in the dev container match the image? Compare package versions.

The container's packages of the target architecture (zlib1g:arm64, libssl3:arm64 ...:
the `-dev` packages bring their runtime libraries along) are compared, by name and
architecture, with the image project's package list: its export manifest, else the
dpkg status inside its configured tarball, else its bootstrap manifest (fewer packages).
Both come from the same suite and mirror, so they differ only when the mirror moved on
between the two builds; then the container stage names each difference.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edibuild.data import Json
from edibuild.errors import EdibuildError
from edibuild.image.debian import installed_packages
from edibuild.run import output

QUERY = "${db:Status-Abbrev}\t${Package}\t${Architecture}\t${Version}\n"
Package = Mapping[str, str]  # {name, architecture, version}


def parse_query(text: str) -> list[dict[str, str]]:
    """The installed packages in the output of `dpkg-query -W -f QUERY`."""
    found = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0].startswith("ii"):
            found.append({"name": parts[1], "architecture": parts[2], "version": parts[3]})
    return found


def _manifest_packages(path: Path) -> list[Package] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    packages = (data.get("info") or {}).get("packages") if isinstance(data, dict) else None
    return list(packages) if isinstance(packages, list) else None


def _tarball_packages(path: Path) -> list[Package] | None:
    if not path.is_file():
        return None
    try:
        status = output(["tar", "--zstd", "-xOf", path, "rootfs/var/lib/dpkg/status"])
    except EdibuildError:
        return None
    return list(installed_packages(status)) or None


def image_packages(target: Path) -> tuple[str, list[Package]] | None:
    """(where from, packages) of an image project's artifact folder; None without any."""
    readers: tuple[tuple[str, Callable[[Path], list[Package] | None], str], ...] = (
        ("export manifest", _manifest_packages, "export.manifest.json"),
        ("configured tarball", _tarball_packages, "configured.tar.zst"),
        ("bootstrap manifest", _manifest_packages, "bootstrap.manifest.json"),
    )
    for what, read, file in readers:
        found = read(target / file)
        if found:
            return f"{what} of {target.name}", found
    return None


@dataclass
class Comparison:
    """The target-architecture packages: equal, different, and absent from the image."""

    source: str
    same: list[str] = field(default_factory=list)
    differ: list[tuple[str, str, str]] = field(default_factory=list)  # name, ours, image's
    not_in_image: list[str] = field(default_factory=list)

    def as_json(self) -> Json:
        """The comparison as manifest info."""
        return {
            "source": self.source,
            "same": len(self.same),
            "differ": [{"package": n, "container": c, "image": i} for n, c, i in self.differ],
            "not_in_image": self.not_in_image,
        }

    def lines(self) -> list[str]:
        """What the container stage says about it."""
        said = [
            f"target libraries: {len(self.same)} packages at the image's versions "
            f"({self.source}), {len(self.not_in_image)} not in the image"
        ]
        said += [f"  DIFFERS: {n}: container {c}, image {i}" for n, c, i in self.differ]
        return said


def compare(
    container: Iterable[Package], image: Sequence[Package], architecture: str, source: str
) -> Comparison:
    """Compare the container's packages of `architecture` with the image's."""
    theirs = {(p["name"], p["architecture"]): p["version"] for p in image}
    result = Comparison(source)
    for package in sorted(container, key=lambda p: p["name"]):
        if package["architecture"] != architecture:
            continue
        name = f"{package['name']}:{package['architecture']}"
        version = theirs.get((package["name"], package["architecture"]))
        if version is None:
            result.not_in_image.append(name)
        elif version == package["version"]:
            result.same.append(name)
        else:
            result.differ.append((name, package["version"], version))
    return result
