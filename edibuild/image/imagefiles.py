"""The files the partitions stage writes into the image from the configuration.

They follow from the project's sections, not from a playbook: the Mender artifact name
(/etc/mender/artifact_info), and for an image with a boot loader GRUB's grub.cfg on the
EFI system partition; a Mender-ready layout (a second root slot) adds GRUB's environment
files, /etc/mender/mender.conf and /etc/mender/device_type. Each file is keyed by the
partition whose tree it goes into and its path there.
"""

from __future__ import annotations

from dataclasses import dataclass

from edibuild.image import grub, mender
from edibuild.image.bootloader import BootLoader, esp_of
from edibuild.image.layout import Layout
from edibuild.image.mender import MenderSettings


@dataclass(frozen=True)
class ImageFile:
    """One file for a partition's tree: which partition, where in it, what it holds."""

    partition: str
    path: str
    data: bytes
    mode: int = 0o644


def image_files(
    layout: Layout,
    bootloader: BootLoader | None,
    settings: MenderSettings | None,
    root_uuid: str,
) -> list[ImageFile]:
    """The files of this configuration; `root_uuid` is the root file system's UUID."""
    root = layout.root
    files: list[ImageFile] = []
    if settings is not None:
        info = mender.artifact_info(settings).encode()
        files.append(ImageFile(root.name, mender.ARTIFACT_INFO, info))
    if bootloader is None:
        return files
    esp = esp_of(layout).name
    slot_b = layout.root_b
    if slot_b is None:
        config = grub.grub_cfg_single(bootloader, root_uuid)
        return [*files, ImageFile(esp, grub.CONFIG, config.encode())]
    assert settings is not None, "a second root slot needs a mender section (checked at load)"
    env = grub.grubenv(grub.initial_env(root.number))
    return [
        *files,
        ImageFile(esp, grub.CONFIG, grub.grub_cfg_ab(bootloader, root.number,
                                                     slot_b.number).encode()),
        *(ImageFile(esp, name, env) for name in grub.ENV_FILES),
        ImageFile(root.name, mender.MENDER_CONF,
                  mender.mender_conf(root.label, slot_b.label).encode()),
        ImageFile(root.name, mender.DEVICE_TYPE, mender.device_type_text(settings).encode()),
    ]  # fmt: skip
