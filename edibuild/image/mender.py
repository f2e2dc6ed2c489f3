"""The project's `mender` section: what the update artifact is called, which devices take it.

    mender: {device_type: raspberrypi3, artifact_name: "{{ edibuild_project_name }}-1.0"}

`device_type` may be a list. The partitions stage writes the artifact name into the
image's /etc/mender/artifact_info, as the Mender client expects.
"""

from __future__ import annotations

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
