"""Stage `mender`: the root partition image as a Mender rootfs-image update artifact.

Input: `partitions`' root image. Output: `artifact` = `<project>.mender`.
Config: the project section `mender: {device_type: raspberrypi3, artifact_name: ...}`
(`device_type` may be a list); the stage is disabled when the section is absent. The
partitions stage writes the same artifact name into the image's
/etc/mender/artifact_info, as the Mender client expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edibuild.errors import ConfigError
from edibuild.layout import parse_layout
from edibuild.project import Json, Project
from edibuild.stage import Stage, StageContext, Tool
from edibuild.values import bad_character

KEYS = ("device_type", "artifact_name")


@dataclass(frozen=True)
class MenderSettings:
    """What the artifact is called and which devices accept it."""

    device_types: tuple[str, ...]
    artifact_name: str


def _fail(project: Project, message: str, hint: str, *keys: str) -> ConfigError:
    return ConfigError(
        message, hint=hint, location=project.where("mender", *keys), key=".".join(("mender", *keys))
    )


def _text(project: Project, field: str, value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or any(c.isspace() for c in value)
        or bad_character(value) is not None
    ):
        raise _fail(project, f"{field} must be a non-empty word without spaces, not {value!r}",
                    f"for example {field}: raspberrypi3", field)  # fmt: skip
    return value


def parse_mender(project: Project) -> MenderSettings | None:
    """Validate the `mender` section; None when the project builds no Mender artifact."""
    raw = project.section("mender")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _fail(project, "must be a mapping", "mender: {device_type: ..., artifact_name: ...}")
    for key in raw:
        if key not in KEYS:
            raise _fail(project, f"unknown key {key!r}", f"known keys: {', '.join(KEYS)}", key)
    for key in KEYS:
        if key not in raw:
            raise _fail(project, f"{key} is missing", "give device_type and artifact_name", key)
    types = raw["device_type"]
    listed = types if isinstance(types, list) else [types]
    names = tuple(_text(project, "device_type", t) for t in listed)
    return MenderSettings(names, _text(project, "artifact_name", raw["artifact_name"]))


def artifact_info(settings: MenderSettings) -> str:
    """Return the /etc/mender/artifact_info text the Mender client reads its name from."""
    return f"artifact_name={settings.artifact_name}\n"


def _config(project: Project) -> Json:
    settings = parse_mender(project)
    assert settings is not None
    return {"device_types": list(settings.device_types), "artifact_name": settings.artifact_name}


def build(ctx: StageContext) -> Json:
    """Write the Mender artifact for the root partition image."""
    settings = parse_mender(ctx.project)
    assert settings is not None
    root = parse_layout(ctx.project).root
    ctx.output("artifact").parent.mkdir(parents=True, exist_ok=True)
    types = [arg for t in settings.device_types for arg in ("-t", t)]
    ctx.run(
        ["mender-artifact", "write", "rootfs-image", *types, "-n", settings.artifact_name,
         "-f", ctx.input("partitions", root.name), "-o", ctx.output("artifact")],
        env=ctx.env,
    )  # fmt: skip
    return {"artifact_name": settings.artifact_name, "device_types": list(settings.device_types)}


STAGE = Stage(
    name="mender",
    doc="Write the Mender update artifact of the root file system",
    upstream=("partitions",),
    outputs=lambda project: {"artifact": f"{project.name}.mender"},
    config=_config,
    build=build,
    enabled=lambda project: parse_mender(project) is not None,
    tools=lambda project: (Tool("mender-artifact", "mender-artifact"),),
    needs_root=False,
    image_output=True,
)
