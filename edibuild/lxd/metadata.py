"""LXD image metadata: architecture names and the reproducible metadata.yaml tarball."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping, Sequence

import yaml

# Debian architecture -> LXD architecture name.
ARCHITECTURES: Mapping[str, str] = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "armhf": "armv7l",
    "armel": "armv6l",
    "i386": "i686",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def architecture(debian_arch: str, supported: Sequence[str]) -> str:
    """LXD's name for a Debian architecture; the server's own when it cannot run that one.

    A foreign rootfs (arm64 on x86_64) runs through qemu-user binfmt, which LXD does not
    know about, so such images are labelled with the server's own architecture.
    """
    wanted = ARCHITECTURES.get(debian_arch, debian_arch)
    return wanted if wanted in supported or not supported else str(supported[0])


def metadata_tarball(architecture: str, epoch: int, properties: Mapping[str, str]) -> bytes:
    """Return an LXD image metadata tarball (metadata.yaml only), reproducibly."""
    meta = {"architecture": architecture, "creation_date": epoch, "properties": dict(properties)}
    data = yaml.safe_dump(meta, sort_keys=True).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size, info.mtime, info.mode = len(data), epoch, 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
