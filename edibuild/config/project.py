"""The validated, frozen form of a project: what every stage reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edibuild.data import Json
from edibuild.errors import Location
from edibuild.image.bootloader import BootLoader
from edibuild.image.boottest import BootTest
from edibuild.image.layout import Layout
from edibuild.image.mender import MenderSettings
from edibuild.image.reproducible import ExportSettings
from edibuild.lxd.settings import ContainerSettings, LxdSettings


@dataclass(frozen=True)
class Node:
    """One ordered plugin entry (`100_base_system: {path: ..., parameters: ...}`)."""

    key: str
    path: Path
    parameters: Mapping[str, Json] = field(default_factory=dict)
    # The files of the plugin's folder it may read (playbooks: templates, files, roles),
    # found and bounded at load (edibuild/config/paths.py); inputs of the stage using it.
    files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Bootstrap:
    """How the root file system is bootstrapped from a Debian mirror."""

    architecture: str
    suite: str
    mirror: str
    components: tuple[str, ...] = ("main",)
    variant: str = "minbase"
    packages: tuple[str, ...] = ()
    keyring: Path | None = None
    tool: str = "debootstrap"


@dataclass(frozen=True)
class Project:
    """A fully rendered, merged and validated project."""

    name: str
    file: Path
    description: str
    parameters: Mapping[str, Json]
    bootstrap: Bootstrap
    lxd_profiles: tuple[Node, ...]
    playbooks: tuple[Node, ...]
    # The whole merged configuration as plain JSON data (what `config:NAME` prints).
    sections: Mapping[str, Json]
    # Key path -> where it was last set; used to point errors at a file and line.
    locations: Mapping[tuple[str, ...], Location] = field(default_factory=dict)
    # The files of the project folder's ssh_pub_keys/ (bounded like a plugin folder).
    ssh_keys: tuple[Path, ...] = ()
    # The typed settings of the sections later stages own (edibuild/config/sections.py).
    lxd: LxdSettings = field(default_factory=LxdSettings)
    container: ContainerSettings = field(default_factory=ContainerSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    layout: Layout | None = None
    bootloader: BootLoader | None = None
    mender: MenderSettings | None = None
    boottest: BootTest | None = None

    def where(self, *keys: str) -> Location:
        """Return the location of the deepest known prefix of `keys` (the project file else)."""
        for end in range(len(keys), 0, -1):
            loc = self.locations.get(tuple(keys[:end]))
            if loc is not None:
                return loc
        return Location(self.file)

    def section(self, name: str) -> Json:
        """Return a top-level section of the merged configuration, or None."""
        return self.sections.get(name)

    @property
    def plugin_files(self) -> tuple[Path, ...]:
        """Every plugin file the project uses (playbooks, profiles, keyrings, ...)."""
        files = [n.path for n in self.lxd_profiles + self.playbooks]
        if self.bootstrap.keyring is not None:
            files.append(self.bootstrap.keyring)
        return tuple(files)
