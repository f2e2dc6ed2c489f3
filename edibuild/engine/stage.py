"""The shape every pipeline stage has, and the context its build function receives."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edibuild import run as runner
from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.run import StrPath


@dataclass(frozen=True)
class Tool:
    """A host command a stage needs, and the Debian package that provides it."""

    command: str
    package: str


def _always(project: Project) -> bool:
    return True


def _nothing(project: Project) -> tuple[Path, ...]:
    return ()


def _no_tools(project: Project) -> tuple[Tool, ...]:
    return ()


def _intact(project: Project, info: Mapping[str, Json]) -> bool:
    return True


def _no_external(project: Project) -> None:
    return None


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline, declared as data plus a build function.

    - `outputs(project)`: artifact name -> file name under artifacts/<project>/.
    - `config(project)`: the JSON slice of configuration the outputs depend on.
    - `plugins(project)`: files whose *content* the outputs depend on.
    - `parsed_plugins(project)`: those of them that count by what they say as YAML, not
      by their bytes (playbooks: a comment-only edit changes nothing; see
      edibuild/store/yamldigest.py).
    - `build(ctx)`: writes every output to `ctx.output(name)`; returns JSON info kept
      in the stage manifest (package lists, digests, ...).
    - `intact(project, info)`: False when external state the outputs stand for (an LXD
      image, say) is gone, so the stage must run again.
    - `clean_external(project)`: removes external state the stage created for the project.
    """

    name: str
    doc: str
    upstream: tuple[str, ...]
    outputs: Callable[[Project], Mapping[str, str]]
    config: Callable[[Project], Json]
    build: Callable[[StageContext], Json]
    enabled: Callable[[Project], bool] = _always
    plugins: Callable[[Project], tuple[Path, ...]] = _nothing
    parsed_plugins: Callable[[Project], tuple[Path, ...]] = _nothing
    tools: Callable[[Project], tuple[Tool, ...]] = _no_tools
    intact: Callable[[Project, Mapping[str, Json]], bool] = _intact
    clean_external: Callable[[Project], None] = _no_external
    needs_root: bool = True
    # Part of the image outputs: cleaned by `doit clean image:NAME` (bootstrap and the
    # container stages are kept).
    image_output: bool = False
    # Part of `image:NAME` (every artifact of the project); the dev container and the
    # boot test (a test of the image, run by `doit boottest:NAME`) are not.
    in_image: bool = True

    @functools.cached_property
    def code_version(self) -> str:
        """Digest of the module that defines the build function (its 'code version').

        Computed once per process, so a build and its record agree even when the
        module is edited while the build runs.
        """
        build: Any = self.build
        while isinstance(build, functools.partial):
            build = build.func
        module = inspect.getmodule(build)
        source = inspect.getsource(module) if module is not None else self.name
        return hashlib.sha256(source.encode()).hexdigest()[:16]


@dataclass
class StageContext:
    """What a stage's build function gets: its project, inputs, scratch space and log."""

    project: Project
    stage: Stage
    key: str
    workdir: Path
    log: Path
    inputs: Mapping[str, Mapping[str, Path]]
    input_info: Mapping[str, Mapping[str, Json]]
    source_date_epoch: int
    output_names: Mapping[str, str] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a step of the build: written to the log, and kept in the manifest's info."""
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = round(time.monotonic() - started, 1)
            self.phases[name] = round(self.phases.get(name, 0.0) + seconds, 1)
            with self.log.open("a") as log:
                log.write(f"# phase {name}: {seconds:.1f} s\n")

    def output(self, name: str) -> Path:
        """Path where the build must write output `name` (renamed into the cache after)."""
        if name not in self.output_names:
            raise KeyError(f"stage {self.stage.name} declares no output {name!r}")
        return self.workdir / "out" / self.output_names[name]

    def input(self, stage: str, name: str) -> Path:
        """Path of output `name` of upstream `stage` (read-only: never modify it)."""
        return self.inputs[stage][name]

    def info(self, stage: str) -> Mapping[str, Json]:
        """The info an upstream stage returned from its build (package lists, ...)."""
        return self.input_info[stage]

    def scratch(self, name: str) -> Path:
        """A scratch path inside the stage's work directory (removed after the build)."""
        return self.workdir / name

    def run(
        self,
        argv: Sequence[StrPath],
        *,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
        input: bytes | Iterable[bytes] | None = None,
        timeout: float | None = None,
        append_to: Path | None = None,
    ) -> None:
        """Run a command with its output going to this stage's log (or its stdout to the
        end of `append_to`).

        Its TMPDIR is in the stage's scratch space, so what it leaves there goes with it.
        """
        tmp = self.workdir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {"TMPDIR": os.fspath(tmp), **(env or {})}
        runner.run(
            argv, log=self.log, cwd=cwd, env=env, input=input, timeout=timeout,
            append_to=append_to,
        )  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        """Environment for reproducible output (SOURCE_DATE_EPOCH and a fixed locale)."""
        return {"SOURCE_DATE_EPOCH": str(self.source_date_epoch), "LC_ALL": "C.UTF-8"}
