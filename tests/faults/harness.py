"""The shared state of a fault cell's run, and how a fault is timed to strike mid-build.

What every fault kind (signals.py, space.py, network.py, concurrency.py, corruption.py)
and the checks (checks.py) share: the reference build a recovery must equal, the session
(Context), one run's state (Cellrun), preparing a stage to really build, and `strike`,
which waits for a random moment of the stage's build.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edibuild.store.artifacts import ProjectArtifacts
from edibuild.store.cache import Cache
from tests.faults import probes
from tests.faults.checkout import PROJECT, STAGES, USER_STAGE, Checkout, Started
from tests.faults.decoys import Decoys
from tests.faults.matrix import Cell, Outcome

P = PROJECT
DEV_CONTAINER = f"edibuild-dev-{P}"
# Bit-reproducible stages: the same inputs give the same bytes (bench/repro.py). Not
# configure (LXD's export), the boot test (its time), the dev container (configure's
# digest) and mender (mender-artifact writes other bytes each run: its files' mtimes and
# more), whose artifact is compared by what `mender-artifact read` says of it.
REPRODUCIBLE = ("bootstrap", "import", "export", "partitions", "disk", "bmap", USER_STAGE)
DEFAULT_SECONDS = {"bootstrap": 45, "import": 2, "configure": 120, "export": 9, "partitions": 17,
                   "disk": 3, "bmap": 2, "mender": 7, "boottest": 40, "container": 15,
                   USER_STAGE: 20}  # fmt: skip
CLEANED = re.compile(r"left by an earlier run|of the ended build|changed (on disk|after)")
STOP_SECONDS = 300  # how long a faulted doit may take to stop (grace periods, clean-up)


def release_of(info: dict[str, object]) -> str:
    """The digest of the mirror's InRelease a bootstrap was made from."""
    release = info.get("release")
    return str(release.get("sha256", "")) if isinstance(release, dict) else ""


def layer_aliases(info: dict[str, object]) -> list[str]:
    """The aliases of the layers a configure build published, in playbook order."""
    layers = info.get("layers")
    published = layers.get("published") if isinstance(layers, dict) else None
    return [str(x["alias"]) for x in published or [] if isinstance(x, dict)]


@dataclass
class Reference:
    """What a build that never failed made: digests, infos, how long each stage took."""

    digests: dict[str, dict[str, str]]
    infos: dict[str, dict[str, object]]
    seconds: dict[str, float]
    release: str

    @classmethod
    def of(cls, checkout: Checkout) -> Reference:
        seconds: dict[str, float] = {k: float(v) for k, v in DEFAULT_SECONDS.items()}
        infos = {}
        for stage in STAGES:
            manifest = checkout.manifest(stage)
            infos[stage] = checkout.info(stage)
            if manifest and manifest.get("reused") is False:
                seconds[stage] = float(str(manifest.get("seconds", seconds[stage])))
        release = release_of(infos["bootstrap"])
        return cls(checkout.digests(), infos, seconds, release)

    def space(self, stage: str, what: str) -> int:
        """Bytes the stage's reference build needed (`scratch` or `outputs`)."""
        space = self.infos.get(stage, {}).get("space")
        value = space.get(what) if isinstance(space, dict) else None
        return int(value) if isinstance(value, int) else 64 << 20


@dataclass
class Context:
    """One session of the harness: where it works, the shared cache, the reference."""

    tmp: Path
    cache: Path
    projects: Path
    lxd: probes.Lxd
    decoys: Decoys
    reference: Reference
    reference_checkout: Checkout
    say: Callable[[str], None] = print
    counter: int = 0
    mirror_changed: bool = False

    def folder(self, cell: Cell) -> Path:
        self.counter += 1
        path = self.tmp / f"{self.counter:03d}-{cell.slug}"
        path.mkdir(parents=True)
        return path


@dataclass
class Cellrun:
    """The state of one run of a cell while it runs."""

    ctx: Context
    cell: Cell
    rng: random.Random
    root: Path
    outcome: Outcome
    checkouts: list[Checkout] = field(default_factory=list)
    lxd: probes.Lxd | None = None
    decoys: list[Decoys] = field(default_factory=list)
    mm_before: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.time)
    own_mounts: tuple[str, ...] = ()

    @property
    def stage(self) -> str:
        return self.cell.stage

    def checkout(self, name: str = "a", cache: Path | None = None, **env: str) -> Checkout:
        ck = Checkout(self.root / name, cache or self.ctx.cache, self.ctx.projects, env)
        if self.lxd is not None:
            ck.env["LXD_DIR"] = str(self.lxd.socket.parent)
        self.checkouts.append(ck)
        return ck

    def note(self, text: str) -> None:
        self.outcome.notes.append(text)


def task(stage: str) -> str:
    return f"{stage}:{P}"


def warm(ck: Checkout, *stages: str) -> None:
    """Install the stages (and what they read) from the cache: cheap, no fault yet."""
    ck.need(*(task(s) for s in stages))


def force(run: Cellrun, ck: Checkout, stage: str) -> None:
    """Make the stage build for real next time: `doit clean --forget` (also its LXD state).

    For configure the layers are kept, partly kept or removed (a random choice), so the
    fault meets a run from scratch as well as one from a cached layer.
    """
    start = "scratch"
    if stage == "configure":
        start = run.rng.choice(["scratch", "layer after 100_kernel", "layer after 200_faults"])
        run.note(f"configure starts from {start} (if the layers are there)")
    if start == "scratch":
        ck.need("clean", "--forget", task(stage))
        return
    key = ck.key(stage)
    assert key is not None
    aliases = layer_aliases(run.ctx.reference.infos["configure"])
    if start == "layer after 100_kernel":
        for alias in aliases[1:]:
            (run.lxd or run.ctx.lxd).lxc("image", "delete", alias, check=False)
    Cache(ck.cache).forget(stage, key)  # the entry and the outputs go, the layers stay
    ProjectArtifacts(ck.artifacts_root, P).remove(stage)
    ck.need("forget", task(stage))


def building(stage: str) -> str:
    return f"{stage}:{P}: building"


def strike(
    run: Cellrun,
    started: Started,
    stages: tuple[str, ...],
    act: Callable[[], None],
    within: float | None = None,
    after: str = "",
) -> None:
    """Wait until the stages build (and `after` shows), then for a random part of their
    usual time (or of `within` seconds), then act."""
    for text in [building(stage) for stage in stages] + ([after] if after else []):
        if not started.wait_for(text, 900):
            run.note(f"{text!r} never showed")
            return
    longest = min(run.ctx.reference.seconds.get(s, 30.0) for s in stages)
    delay = run.rng.uniform(0, min(longest * 0.8, within or longest))
    run.note(f"fault {delay:.1f} s after the build started (usual time {longest:.0f} s)")
    time.sleep(delay)
    ck = run.checkouts[0]
    run.outcome.landed = started.proc.poll() is None and all(ck.pointer(s) is None for s in stages)
    act()
