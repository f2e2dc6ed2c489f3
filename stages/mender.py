"""Stage `mender`: the root partition image as a Mender rootfs-image update artifact.

Reads: `partitions`' root image and the `mender` section (edibuild/image/mender.py);
the stage is off without that section. Writes: `artifact` = `<project>.mender`. The
partitions stage writes the same artifact name into the image's
/etc/mender/artifact_info, as the Mender client expects.
"""

from __future__ import annotations

from collections.abc import Mapping

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.image.layout import layout_of
from edibuild.image.mender import MenderSettings


def enabled(project: Project) -> bool:
    """Only projects with a `mender` section make an artifact."""
    return project.mender is not None


def settings_of(project: Project) -> MenderSettings:
    """The project's mender settings (the stage runs only when there are some)."""
    assert project.mender is not None, "the mender stage runs only with a mender section"
    return project.mender


def outputs(project: Project) -> Mapping[str, str]:
    """One output: the artifact."""
    return {"artifact": f"{project.name}.mender"}


def config(project: Project) -> Json:
    """The device types and the artifact name."""
    settings = settings_of(project)
    return {"device_types": list(settings.device_types), "artifact_name": settings.artifact_name}


def tools(project: Project) -> tuple[Tool, ...]:
    """mender-artifact writes it."""
    return (Tool("mender-artifact", "mender-artifact"),)


def build(ctx: StageContext) -> Json:
    """Write the Mender artifact for the root partition image."""
    settings = settings_of(ctx.project)
    root = layout_of(ctx.project).root
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
    outputs=outputs,
    config=config,
    build=build,
    enabled=enabled,
    tools=tools,
    needs_root=False,
    image_output=True,
)
