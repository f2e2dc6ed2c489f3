"""The project's `mender` section: what the update artifact is called, which devices take it.

    mender: {device_type: raspberrypi3, artifact_name: "{{ edibuild_project_name }}-1.0"}

`device_type` may be a list (the artifact installs on each; the image's own
/etc/mender/device_type names the first). The partitions stage writes the artifact name
into the image's /etc/mender/artifact_info, as the Mender client expects, and for a
Mender-ready layout (a second root slot, edibuild/image/layout.py) mender.conf and
device_type too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edibuild.config.reader import Reader

KEYS = ("device_type", "artifact_name")
WORD = "a word without spaces"


@dataclass(frozen=True)
class MenderSettings:
    """What the artifact is called and which devices accept it."""

    device_types: tuple[str, ...]
    artifact_name: str


def parse_mender(reader: Reader | None) -> MenderSettings | None:
    """Read the `mender` section; None when the project builds no Mender artifact."""
    if reader is None:
        return None
    reader.known(KEYS)
    if isinstance(reader.raw("device_type"), list):
        types = reader.texts("device_type", what=WORD, forbidden=" ")
        if not types:
            reader.fail("device_type lists no device", hint="device_type: raspberrypi3",
                        field="device_type")  # fmt: skip
    else:
        types = (reader.text("device_type", what=WORD, forbidden=" "),)
    return MenderSettings(types, reader.text("artifact_name", what=WORD, forbidden=" "))


def artifact_info(settings: MenderSettings) -> str:
    """Return the /etc/mender/artifact_info text the Mender client reads its name from."""
    return f"artifact_name={settings.artifact_name}\n"


MENDER_CONF = "etc/mender/mender.conf"
DEVICE_TYPE = "etc/mender/device_type"
ARTIFACT_INFO = "etc/mender/artifact_info"


def device_type_text(settings: MenderSettings) -> str:
    """/etc/mender/device_type: the device's own type (the first one the artifact lists)."""
    return f"device_type={settings.device_types[0]}\n"


def mender_conf(slot_a: str, slot_b: str) -> str:
    """/etc/mender/mender.conf of a standalone A/B device: the two root partitions by
    their GPT names (stable across versions, unlike PARTUUIDs) and the device type file
    in /etc (the client's default is on the data partition, empty in a fresh image)."""
    conf = {
        "RootfsPartA": f"/dev/disk/by-partlabel/{slot_a}",
        "RootfsPartB": f"/dev/disk/by-partlabel/{slot_b}",
        "DeviceTypeFile": f"/{DEVICE_TYPE}",
    }
    return json.dumps(conf, indent=2) + "\n"
