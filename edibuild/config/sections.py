"""The project's sections that later stages own, each parsed at load by its owner module.

`parse_sections` reads them all (through edibuild/config/reader.py, so every mistake is
reported alike, before anything runs); the Project carries the typed results, and the
stages read those, never the raw mappings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edibuild.config.reader import Reader, Where
from edibuild.data import Json

if TYPE_CHECKING:
    from edibuild.config.project import Project


def parse_sections(data: Mapping[str, Json], where: Where, architecture: str) -> dict[str, Any]:
    """The typed settings of the lxd, container, export, layout, bootloader, mender and
    boottest sections (with the checks across layout, bootloader and mender)."""
    from edibuild.image.bootloader import check_boot_setup, parse_bootloader
    from edibuild.image.boottest import parse_boottest
    from edibuild.image.layout_parse import parse_layout
    from edibuild.image.mender import parse_mender
    from edibuild.image.reproducible import parse_export
    from edibuild.lxd.settings import parse_container, parse_lxd

    def reader(name: str) -> Reader | None:
        return Reader.section(where, name, data)

    layout = parse_layout(reader("layout"))
    bootloader = parse_bootloader(reader("bootloader"))
    mender = parse_mender(reader("mender"))
    check_boot_setup(bootloader, layout, mender, where)
    return {
        "lxd": parse_lxd(reader("lxd")),
        "container": parse_container(reader("container")),
        "export": parse_export(reader("export")),
        "layout": layout,
        "bootloader": bootloader,
        "mender": mender,
        "boottest": parse_boottest(reader("boottest"), architecture),
    }


def with_settings(project: Project) -> Project:
    """The project with its typed settings parsed from `sections` (for hand-made projects)."""
    typed = parse_sections(project.sections, project.where, project.bootstrap.architecture)
    return dataclasses.replace(project, **typed)
