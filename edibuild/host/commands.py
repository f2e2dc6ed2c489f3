"""Which Debian package provides each command edibuild runs (for "apt-get install" hints).

Standard library only: the run helper names the package of a missing command, and host
setup reports the commands a machine lacks.
"""

from __future__ import annotations

import os

# The commands edibuild runs, each with the package (of DEBIAN_PACKAGES) that provides it.
HOST_COMMANDS: tuple[tuple[str, str], ...] = (
    ("debootstrap", "debootstrap"),
    ("mmdebstrap", "mmdebstrap"),
    ("lxd", "lxd"),
    ("lxc", "lxd-client"),
    ("qemu-aarch64-static", "qemu-user-static"),
    ("update-binfmts", "binfmt-support"),
    ("arch-test", "arch-test"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("sfdisk", "fdisk"),
    ("bmaptool", "bmap-tools"),
    ("mender-artifact", "mender-artifact"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("zstd", "zstd"),
)

# Further commands stages may name in errors, with their bookworm package.
_MORE_COMMANDS: dict[str, str] = {
    "e2fsck": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "tune2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
    "dpkg-query": "dpkg",
    "tar": "tar",
    "timeout": "coreutils",
    "truncate": "coreutils",
    "mke2fs": "e2fsprogs",
    "mkfs.fat": "dosfstools",
    "fsck.vfat": "dosfstools",
    "mmd": "mtools",
    "mdir": "mtools",
    "fdisk": "fdisk",
    "sgdisk": "gdisk",
    "parted": "parted",
    "genimage": "genimage",
    "mksquashfs": "squashfs-tools",
    "qemu-img": "qemu-utils",
    "qemu-system-i386": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-system-arm": "qemu-system-arm",
    "incus": "incus-client",
    "systemd-nspawn": "systemd-container",
    "apt-cacher-ng": "apt-cacher-ng",
    "xz": "xz-utils",
    "unzstd": "zstd",
    "losetup": "mount",
    "mount": "mount",
    "setsid": "util-linux",
    "flock": "util-linux",
    "ansible-playbook": "ansible-core",
    "python3": "python3",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "newuidmap": "uidmap",
    "runuser": "util-linux",
}

_PACKAGE_OF: dict[str, str] = {**dict(HOST_COMMANDS), **_MORE_COMMANDS}


def package_for(command: str) -> str | None:
    """Return the Debian package providing `command`, for "apt-get install" hints."""
    name = os.path.basename(command)
    if name in _PACKAGE_OF:
        return _PACKAGE_OF[name]
    if name.startswith("qemu-") and name.endswith("-static"):
        return "qemu-user-static"
    return None
