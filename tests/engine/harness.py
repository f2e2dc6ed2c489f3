"""The engine test harness: doit in-process on small fake stages (no root, no network)."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from edibuild import doit_ext
from edibuild.config.project import Bootstrap, Node, Project
from edibuild.engine.plan import catalog, creators, doit_config
from edibuild.engine.session import Session
from edibuild.engine.stage import Stage, StageContext
from edibuild.store.workspace import Workspace

BUILDS: Counter[str] = Counter()
INTERRUPT: set[str] = set()


def _alpha(ctx: StageContext) -> Any:
    BUILDS["alpha"] += 1
    if "slow" in INTERRUPT:
        time.sleep(0.5)
    ctx.output("text").write_text(ctx.project.sections["alpha"]["value"])
    return {"length": len(ctx.project.sections["alpha"]["value"])}


def _beta(ctx: StageContext) -> Any:
    BUILDS["beta"] += 1
    if "beta" in INTERRUPT:
        ctx.output("text").write_text("half")
        raise KeyboardInterrupt
    upstream = ctx.input("alpha", "text").read_text()
    plugin = ctx.project.playbooks[0].path.read_text()
    ctx.output("text").write_text(upstream.upper() + plugin)
    return {"alpha_length": ctx.info("alpha")["length"]}


def _gamma(ctx: StageContext) -> Any:
    BUILDS["gamma"] += 1
    with ctx.phase("write"):
        ctx.output("image").write_text("image of " + ctx.input("beta", "text").read_text())
    return {}


def stages() -> tuple[Stage, ...]:
    alpha = Stage(
        name="alpha",
        doc="First fake stage",
        upstream=(),
        outputs=lambda p: {"text": "alpha.txt"},
        config=lambda p: p.sections["alpha"],
        build=_alpha,
        needs_root=False,
    )
    beta = Stage(
        name="beta",
        doc="Second fake stage",
        upstream=("alpha",),
        outputs=lambda p: {"text": "beta.txt"},
        config=lambda p: {},
        plugins=lambda p: tuple(n.path for n in p.playbooks),
        build=_beta,
        needs_root=False,
    )
    gamma = Stage(
        name="gamma",
        doc="Image fake stage",
        upstream=("beta",),
        outputs=lambda p: {"image": f"{p.name}.img"},
        config=lambda p: {},
        build=_gamma,
        needs_root=False,
        image_output=True,
    )
    return alpha, beta, gamma


@dataclass
class Harness:
    """A workspace with one or more fake projects, driven through doit in-process."""

    tmp: Path
    values: dict[str, str]
    capsys: pytest.CaptureFixture[str]
    stages: tuple[Stage, ...] = field(default_factory=stages)

    @property
    def workspace(self) -> Workspace:
        return Workspace(
            root=self.tmp,
            projects_dir=self.tmp / "projects",
            shipped_dir=self.tmp / "projects",
            artifacts_dir=self.tmp / "artifacts",
            cache_dir=self.tmp / "cache",
            state_file=self.tmp / "state.sqlite3",
        )

    def project(self, name: str) -> Project:
        playbook = self.tmp / "playbook.yml"
        if not playbook.exists():
            playbook.write_text("- hosts: all\n")
        return Project(
            name=name,
            file=self.tmp / f"{name}.yml",
            description=f"Fake project {name}",
            parameters={},
            bootstrap=Bootstrap(
                architecture=host_arch(), suite="bookworm", mirror="http://deb.debian.org/debian"
            ),
            lxd_profiles=(),
            playbooks=(Node("100_play", playbook),),
            sections={"alpha": {"value": self.values.get(name, "hello")}},
        )

    def doit(self, *args: str, projects: tuple[str, ...] = ("proj",)) -> tuple[int, str]:
        session = Session(self.workspace, [self.project(p) for p in projects], self.stages)
        config = {**doit_config(self.workspace), "outfile": sys.stdout}
        namespace: dict[str, Any] = {"DOIT_CONFIG": config}
        namespace.update(creators(session))
        doit_ext.publish(catalog(session))
        self.capsys.readouterr()
        code = DoitMain(ModuleTaskLoader(namespace), config_filenames=()).run(list(args))
        captured = self.capsys.readouterr()
        return code or 0, captured.out + captured.err

    def art(self, rel: str) -> Path:
        return self.tmp / "artifacts" / "proj" / rel


def host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
