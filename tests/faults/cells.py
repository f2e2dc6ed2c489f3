"""Run one cell of the fault matrix: prepare, inject the fault, check, recover, check again.

What must hold after every fault (checked here, not by eye):
- the next plain build (`doit image:NAME`, and the stage's own task for the boot test and
  the dev container) completes, and its outputs equal those of the reference build that
  never failed (the same digests for the stages that are bit-reproducible);
- nothing from the failed run is taken as finished: every installed output holds the
  bytes its pointer names, every cache entry's blobs their digests; a corrupted blob is
  caught before use, and its bytes end up nowhere;
- nothing is left: LXD containers, profiles, images, proxy devices of the run, mounts,
  loop devices, scratch space, temporary files, processes (apt, qemu, ...), held locks;
  the decoys (the user's own LXD objects) untouched;
- one clear message for the fault (no traceback) naming the stage's log.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edibuild.store.artifacts import ProjectArtifacts
from edibuild.store.cache import Cache, is_digest
from edibuild.store.fsutil import read_json, sha256_file
from tests.faults import probes
from tests.faults.checkout import (
    PROJECT,
    STAGES,
    UPSTREAM,
    USER_STAGE,
    Checkout,
    Run,
    Started,
    copy_projects,
    downstream,
    recovery_tasks,
)
from tests.faults.matrix import PARALLEL, Cell, Outcome

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


def _release(info: dict[str, object]) -> str:
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
        release = _release(infos["bootstrap"])
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
    decoys: probes.Decoys
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
    decoys: list[probes.Decoys] = field(default_factory=list)
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


# -- preparing: the stage must really build, its upstream comes from the cache ------------


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


# -- checks ----------------------------------------------------------------------------


def stale_cache(cache: Path, since: float) -> list[str]:
    """Cache entries written since `since` whose blobs do not hold their digests."""
    wrong = []
    for entry in (cache / "keys").rglob("*.json"):
        if entry.stat().st_mtime < since - 1:
            continue
        data = read_json(entry)
        outputs = data.get("outputs") if isinstance(data, dict) else None
        for out in (outputs or {}).values():
            digest = out.get("sha256") if isinstance(out, dict) else None
            if not is_digest(digest):
                continue
            blob = cache / "blobs" / str(digest)[:2] / str(digest)
            if blob.exists() and sha256_file(blob) != digest:
                wrong.append(f"cache entry {entry.name} names blob {blob.name} with other bytes")
    return wrong


def check_stale(run: Cellrun, when: str) -> None:
    """Nothing taken as finished that is not: installed files, cache entries."""
    for ck in run.checkouts:
        run.outcome.stale += [f"{when}: {w}" for w in ck.mismatched()]
    for cache in {ck.cache for ck in run.checkouts}:
        run.outcome.stale += [f"{when}: {w}" for w in stale_cache(cache, run.started)]


def check_message(run: Cellrun, result: Run, want: str, stage: str | None = None) -> None:
    """One clear message: no traceback, `want` in the output, the stage's log named."""
    out = result.output
    stage = stage or run.stage
    if "Traceback" in out:
        run.outcome.messages.append(f"a traceback: {_tail(out)}")
    if want and want.lower() not in out.lower():
        run.outcome.messages.append(f"no {want!r} in the output: {_tail(out)}")
    log = str(run.checkouts[0].log(stage))
    if result.code != 0 and not any(str(ck.log(stage)) in out for ck in run.checkouts):
        run.outcome.messages.append(f"the log {log} is not named: {_tail(out)}")


def _tail(text: str, lines: int = 12) -> str:
    return "\n    " + "\n    ".join(text.strip().splitlines()[-lines:])


def recover(run: Cellrun, ck: Checkout, stages: set[str] | None = None) -> bool:
    """Run the plain build; it must complete."""
    for name in recovery_tasks(stages if stages is not None else {run.stage}):
        result = ck.run(name, timeout=3600)
        if result.code != 0:
            run.outcome.failed.append(
                f"`doit {name}` failed ({result.code}): {_tail(result.output)}"
            )
            return False
        if "Traceback" in result.output:
            run.outcome.messages.append(f"a traceback in `doit {name}`: {_tail(result.output)}")
        for line in result.output.splitlines():
            if CLEANED.search(line):
                run.note("recovery: " + line.removeprefix("edibuild: ").strip())
    return True


def check_outputs(run: Cellrun, ck: Checkout) -> None:
    """The outputs equal the reference's (bit for bit where the stage is reproducible)."""
    ref = run.ctx.reference
    got = ck.digests()
    release = _release(ck.info("bootstrap"))
    if release and ref.release and release != ref.release:
        run.note("the mirror changed since the reference build: digests not compared")
        run.ctx.mirror_changed = True
        return
    for stage in REPRODUCIBLE:
        if stage in got and stage in ref.digests and got[stage] != ref.digests[stage]:
            run.outcome.stale.append(f"{stage}'s outputs differ from the reference build's")
    if "mender" in got and mender_summary(ck) != mender_summary(run.ctx.reference_checkout):
        run.outcome.stale.append("the mender artifact holds other contents than the reference's")
    for stage in ("configure", "export"):
        if stage not in got:
            run.outcome.failed.append(f"{stage} has no outputs after the recovery")
    if "boottest" in got and ck.info("boottest").get("booted") is not True:
        run.outcome.failed.append("the boot test's result does not say booted")
    if "container" in got:
        record = read_json(ck.artifacts / "dev-container.json") or {}
        configured = ck.artifacts / "configured.tar.zst"
        if record.get("fingerprint") != sha256_file(configured):
            run.outcome.stale.append("the dev container was not made from the configured rootfs")
        lxd = run.lxd or run.ctx.lxd
        state = probes.lxd_state(lxd, P)
        if state.instances.get(DEV_CONTAINER, {}).get("status") != "Running":
            run.outcome.failed.append(f"the dev container {DEV_CONTAINER} does not run")


def mender_summary(ck: Checkout) -> list[str]:
    """What the mender artifact holds: name, devices, payload sizes and checksums."""
    path = ck.artifacts / f"{P}.mender"
    proc = subprocess.run(["mender-artifact", "read", path], capture_output=True, text=True,
                          check=False)  # fmt: skip
    keep = ("Name:", "Compatible devices:", "checksum:", "size:", "name:", "Type:")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith(keep)]


def check_leaks(run: Cellrun, when: str, processes_only: bool = False) -> None:
    """Nothing left by the harness's doit runs (see the module docstring)."""
    leaks = run.outcome.leaks
    roots = [run.root, *{ck.cache for ck in run.checkouts}]
    marks = [m for ck in run.checkouts for m in ck.marks]
    leaks += [f"{when}: {p}" for p in probes.processes(marks, [run.root])]
    leaks += [f"{when}: mount {m}" for m in probes.mounts_under(roots) if not _ours(run, m)]
    leaks += [f"{when}: loop device {d}" for d in probes.loops_under(roots)]
    lxds = [run.lxd] if run.lxd is not None else [run.ctx.lxd]
    for lxd in lxds:
        if not lxd.answers():
            continue
        state = probes.lxd_state(lxd, P)
        for name, inst in state.instances.items():
            if inst["owner"] in marks:
                leaks.append(f"{when}: LXD container {name} of a faulted run")
        if not processes_only:
            decoy_images = {d.unaliased for d in [*run.decoys, run.ctx.decoys]}
            for fingerprint in decoy_images:
                state.images.pop(fingerprint, None)
            leaks += [f"{when}: {leak}" for leak in probes.lxd_leaks(state, DEV_CONTAINER, P)]
    if processes_only:
        return
    for cache in {ck.cache for ck in run.checkouts}:
        leaks += [f"{when}: {s}" for s in probes.scratch_left(cache, P)]
        leaks += [f"{when}: {s}" for s in probes.held_locks(cache)]
        parts = [cache / "blobs", cache / "keys", cache / "apt-proxy"]
        leaks += [f"{when}: {s}" for s in probes.partial_files(parts)]
    for ck in run.checkouts:
        leaks += [f"{when}: {s}" for s in probes.partial_files([ck.artifacts])]
    new = probes.mmdebstrap_dirs() - run.mm_before
    if new and not probes.mmdebstrap_running():
        leaks += [f"{when}: mmdebstrap's tree {d} in /tmp" for d in sorted(new)]
    for decoys in [run.ctx.decoys, *run.decoys]:
        leaks += [f"{when}: {t}" for t in decoys.touched()]


def _ours(run: Cellrun, point: str) -> bool:
    """The harness's own mounts (the small tmpfs of a full-disk cell)."""
    return point in run.own_mounts


def finish_checks(run: Cellrun, *checkouts: Checkout) -> None:
    """After the recovery: stale, outputs, leaks (and what the stages took, for timing)."""
    for stage in STAGES:
        manifest = run.checkouts[0].manifest(stage)
        if manifest.get("reused") is False and stage != "configure":
            run.ctx.reference.seconds[stage] = float(str(manifest.get("seconds")))
    check_stale(run, "after recovery")
    for ck in checkouts or run.checkouts[:1]:
        check_outputs(run, ck)
    check_leaks(run, "after recovery")


# -- timing: a random moment of the stage ------------------------------------------------


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


# -- the faults ------------------------------------------------------------------------


def signal_fault(run: Cellrun, signum: signal.Signals, parallel: bool = False) -> None:
    ck = run.checkout()
    stages = (run.stage, PARALLEL[run.stage]) if parallel else (run.stage,)
    warm(ck, *stages)
    for stage in stages:
        force(run, ck, stage)
    args = (("-n", "2") if parallel else ()) + tuple(task(s) for s in stages)
    started = ck.start(*args)

    def send() -> None:
        if signum == signal.SIGINT:  # Ctrl-C: the terminal signals the foreground group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.proc.pid, signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.proc.pid, signum)

    strike(run, started, stages, send)
    result = started.finish(STOP_SECONDS)
    if result.code == -999:
        run.outcome.failed.append(f"doit did not stop within {STOP_SECONDS} s of {signum.name}")
    check_stale(run, f"after {signum.name}")
    if signum != signal.SIGKILL:
        if run.outcome.landed:
            check_message(run, result, "interrupted", run.stage)
        check_leaks(run, f"right after {signum.name}", processes_only=True)
    recover(run, ck, set(stages))
    finish_checks(run)


def space_fault(run: Cellrun, where: str) -> None:
    ref = run.ctx.reference
    share = run.rng.uniform(0.1, 0.6)
    mount = run.root / "small"
    if where == "artifacts":
        run.own_mounts = (str(mount),)
        with probes.tmpfs(mount, 16 << 30):
            ck = run.checkout(EDIBUILD_ARTIFACTS=str(mount))
            warm(ck, run.stage)
            force(run, ck, run.stage)  # it builds (a cache hit would only copy)
            used = probes.free_used(mount)
            size = used + int(share * ref.space(run.stage, "outputs"))
            probes.resize(mount, size)
            _fill_and_recover(run, ck, mount, size)
        return
    cache = run.root / "cache"
    target = cache / ("tmp" if where == "scratch" else "blobs")
    need = ref.space(run.stage, "scratch" if where == "scratch" else "outputs")
    size = int(share * need)
    ck = run.checkout()
    warm(ck, *UPSTREAM[run.stage])  # from the shared cache
    run.own_mounts = (str(target),)
    with probes.tmpfs(target, size):
        ck.cache = cache  # the stage itself builds with the small cache
        ck.env["EDIBUILD_CACHE"] = str(cache)
        _fill_and_recover(run, ck, target, size)


def _fill_and_recover(run: Cellrun, ck: Checkout, mount: Path, size: int) -> None:
    run.note(f"{mount.name} holds {size >> 20} MiB")
    result = ck.run(task(run.stage), timeout=3600)
    run.outcome.landed = result.code != 0
    if result.code == 0:
        run.note("the stage fitted: no fault")
    else:
        check_message(run, result, "no space left")
        if str(mount) not in result.output:
            run.outcome.messages.append(
                f"the full folder {mount} is not named: {_tail(result.output)}"
            )
        if "needs about" not in result.output:
            run.outcome.messages.append(f"no size the stage needs: {_tail(result.output)}")
    check_stale(run, "after the disk filled")
    probes.resize(mount, 32 << 30)  # space freed
    recover(run, ck)
    finish_checks(run)


def lxd_fault(run: Cellrun) -> None:
    private = probes.PrivateLxd()
    try:
        private.start()
        run.lxd = private.lxd
        decoys = probes.Decoys(private.lxd, P)
        decoys.make(run.root / "decoys")
        run.decoys.append(decoys)
        ck = run.checkout()
        warm(ck, run.stage)
        ck.need("clean", "--forget", task(run.stage))
        started = ck.start(task(run.stage))
        how = run.rng.choice([signal.SIGTERM, signal.SIGKILL])
        run.note(f"the LXD daemon gets {how.name}")
        strike(run, started, (run.stage,), lambda: private.stop(how))
        result = started.finish(STOP_SECONDS)
        if result.code == -999:
            run.outcome.failed.append(f"doit did not stop within {STOP_SECONDS} s without LXD")
        elif run.outcome.landed and result.code != 0:
            check_message(run, result, "LXD")
        check_stale(run, "after LXD stopped")
        private.start()  # started again, as edibuild starts it
        recover(run, ck)
        finish_checks(run)
    finally:
        for d in run.decoys:
            with contextlib.suppress(Exception):
                d.remove()
        run.decoys.clear()
        private.close()


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                ppid = int(stat.rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


_PEER = re.compile(r"^(\S+)\s+\S+\s+\S+\s+(\S+):(\d+)\s+(\S+):(\d+)\s+(.*)$")


def cut_connections(pids: set[int], proxy_ports: set[int]) -> int:
    """Reset the TCP connections of `pids` to a mirror (ports 80, 443) or to our apt proxy."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=False).stdout
    cut = 0
    for line in out.splitlines():
        found = _PEER.match(line)
        if not found or not any(f"pid={p}," in found.group(6) for p in pids):
            continue
        laddr, lport, paddr, pport = found.group(2, 3, 4, 5)
        mirror = int(pport) in (80, 443) and not paddr.startswith(("127.", "[::1]"))
        proxy = int(pport) in proxy_ports or int(lport) in proxy_ports
        if mirror or proxy:
            subprocess.run(["ss", "-K", "-tn", "src", laddr.strip("[]"), "sport", "=", f":{lport}",
                            "dst", paddr.strip("[]"), "dport", "=", f":{pport}"],
                           capture_output=True, check=False)  # fmt: skip
            cut += 1
    return cut


def listening(pid: int) -> set[int]:
    """The loopback ports a process listens on (edibuild's apt proxy)."""
    out = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True, check=False).stdout
    return {int(m.group(1)) for line in out.splitlines() if f"pid={pid}," in line
            for m in [re.search(r"127\.0\.0\.1:(\d+)", line)] if m}  # fmt: skip


def mirror_fault(run: Cellrun) -> None:
    cache = run.ctx.cache
    ck = run.checkout()
    warm(ck, run.stage)
    if run.stage == "configure":
        cache = run.root / "cache"  # an apt proxy cache of its own: downloads really happen
        ck.need("clean", "--forget", task(run.stage))  # and no layers: every playbook runs
        ck.cache = cache
        ck.env["EDIBUILD_CACHE"] = str(cache)
    else:
        force(run, ck, run.stage)
    started = ck.start(task(run.stage))
    drop = run.rng.uniform(3, 45)
    cuts = [0]

    def cut() -> None:
        run.note(f"connections cut for {drop:.0f} s")
        end = time.monotonic() + drop
        while time.monotonic() < end and started.proc.poll() is None:
            pids = _descendants(started.proc.pid)
            cuts[0] += cut_connections(pids, listening(started.proc.pid))
            time.sleep(0.2)

    # Early, while packages download: bootstrap's first seconds, configure's kernel.
    after = "[qemu_kernel] Install the kernel" if run.stage == "configure" else ""
    strike(run, started, (run.stage,), cut, within=15, after=after)
    run.note(f"{cuts[0]} connections cut")
    result = started.finish(3600)
    if result.code == -999:
        run.outcome.failed.append("doit did not stop after the mirror came back")
    elif result.code != 0:
        check_message(run, result, "")
    else:
        run.note("the stage got through (apt retried)")
    check_stale(run, "after the connections were cut")
    recover(run, ck)
    finish_checks(run)


def second_doit(run: Cellrun) -> None:
    ck = run.checkout()
    warm(ck, run.stage)
    force(run, ck, run.stage)
    first, second = ck.start(task(run.stage)), ck.start(task(run.stage))
    results = [first.finish(3600), second.finish(3600)]
    run.outcome.landed = True
    for result in results:
        if result.code != 0:
            run.outcome.failed.append(f"one of two doit runs failed: {_tail(result.output)}")
        if "Traceback" in result.output:
            run.outcome.messages.append(f"a traceback: {_tail(result.output)}")
    recover(run, ck)
    finish_checks(run)


def two_checkouts(run: Cellrun) -> None:
    one, two = run.checkout("a"), run.checkout("b")
    warm(one, run.stage)
    warm(two, run.stage)
    force(run, one, run.stage)
    if run.stage != "configure":
        two.need("clean", "--forget", task(run.stage))
    else:
        two.need("forget", task(run.stage))
        for path in (two.artifacts / ".state").glob("configure.*"):
            path.unlink()
    a, b = one.start(task(run.stage)), two.start(task(run.stage))
    results = [a.finish(3600), b.finish(3600)]
    run.outcome.landed = True
    for result in results:
        if result.code != 0:
            run.outcome.failed.append(f"a checkout's build failed: {_tail(result.output)}")
        if "Traceback" in result.output:
            run.outcome.messages.append(f"a traceback: {_tail(result.output)}")
    recover(run, one)
    recover(run, two)
    finish_checks(run, one, two)


def corrupt_fault(run: Cellrun) -> None:
    a = run.checkout("a")
    stages = {run.stage}
    for name in recovery_tasks(stages):
        a.need(name)
    outputs = a.pointer(run.stage) or {}
    name = run.rng.choice(sorted(outputs))
    digest = str(outputs[name]["sha256"])
    blob = run.ctx.cache / "blobs" / digest[:2] / digest
    st = blob.stat()
    keep_mtime = run.rng.random() < 0.5
    offset = run.rng.randrange(st.st_size)
    os.chmod(blob, 0o644)
    with blob.open("r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([(old[0] if old else 0) ^ 0x55]))
    os.chmod(blob, 0o444)
    if keep_mtime:
        os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    bad = sha256_file(blob)
    run.note(
        f"byte {offset} of {outputs[name]['file']} changed, mtime {'kept' if keep_mtime else 'new'}"
    )
    run.outcome.landed = True
    b = run.checkout("b")  # a fresh checkout: the stage comes from the cache... or not
    said = ""
    for name_ in recovery_tasks(stages):
        result = b.run(name_)
        said += result.output
        if result.code != 0:
            run.outcome.failed.append(f"`doit {name_}` failed: {_tail(result.output)}")
    if "was changed after it was stored" not in said:
        run.outcome.stale.append(f"the corrupted blob was not reported: {_tail(said)}")
    later = downstream(run.stage)
    readers: set[str] = set()
    if later:  # checkout a still has the corrupted file installed (the same inode)
        reader = next(s for s in later if run.stage in UPSTREAM[s])
        a.need("clean", "--forget", task(reader))  # a stage that reads it builds again
        readers.add(reader)
    elif keep_mtime:
        run.note("checkout a keeps its changed file: nothing reads it, nothing says it changed")
        a.artifacts.joinpath(str(outputs[name]["file"])).unlink()  # not the harness's to judge
        for path in (a.artifacts / ".state").glob(f"{run.stage}.*"):
            path.unlink()
    recover(run, a, stages | readers)
    for ck in (a, b):  # the changed bytes are nowhere: not installed, not in any output
        for path in ck.artifacts.iterdir():
            if path.is_file() and sha256_file(path) == bad:
                run.outcome.stale.append(f"{path.name} in {ck.root.name} holds the changed bytes")
    check_stale(run, "after the corrupted blob")
    for ck in (a, b):
        check_outputs(run, ck)
    check_leaks(run, "after recovery")


def run_cell(ctx: Context, cell: Cell, seed: int) -> Outcome:
    """One run of a cell with its own seed; whatever happens, its folder is cleaned up."""
    outcome = Outcome(cell, seed)
    run = Cellrun(ctx, cell, random.Random(seed), ctx.folder(cell), outcome)
    run.mm_before = probes.mmdebstrap_dirs()
    started = time.monotonic()
    ctx.say(f"faults: {cell.stage} / {cell.fault} (seed {seed}) in {run.root}")
    try:
        fault = cell.fault
        if fault in ("SIGKILL", "SIGTERM", "SIGINT"):
            signal_fault(run, signal.Signals[fault])
        elif fault.endswith("-n 2"):
            signal_fault(run, signal.Signals[fault.split()[0]], parallel=True)
        elif fault.startswith("full "):
            space_fault(run, fault.split()[1])
        elif fault == "LXD stopped":
            lxd_fault(run)
        elif fault == "mirror dropped":
            mirror_fault(run)
        elif fault == "second doit":
            second_doit(run)
        elif fault == "two checkouts":
            two_checkouts(run)
        elif fault == "corrupted blob":
            corrupt_fault(run)
        else:
            raise ValueError(f"unknown fault {fault}")
    except Exception as exc:  # the harness itself failed: a failed run, with the reason
        outcome.failed.append(f"harness: {type(exc).__name__}: {exc}")
    finally:
        outcome.seconds = time.monotonic() - started
        runs = [r for ck in run.checkouts for r in ck.history]
        outcome.notes.append(
            "doit runs: " + ", ".join(f"{' '.join(r.args)} {r.seconds:.0f} s" for r in runs)
        )
        _cleanup(run)
    return outcome


def _cleanup(run: Cellrun) -> None:
    """Unmount what the cell mounted and remove its folder (its artifacts)."""
    for point in probes.mounts_under([run.root]):
        subprocess.run(["umount", "-l", point], check=False)
    if run.outcome.passed:
        shutil.rmtree(run.root, ignore_errors=True)
    else:  # keep the logs of a failed run and what doit said, not its images
        for number, result in enumerate(r for ck in run.checkouts for r in ck.history):
            (run.root / f"doit-{number}.log").write_text(
                f"$ doit {' '.join(result.args)}  # exit {result.code}\n{result.output}"
            )
        for ck in run.checkouts:
            for path in ck.artifacts.glob("*") if ck.artifacts.is_dir() else ():
                if path.is_file():
                    path.unlink()
        with contextlib.suppress(OSError):
            shutil.rmtree(run.root / "cache")


@contextlib.contextmanager
def session(
    tmp: Path,
    cache: Path,
    projects: Path,
    say: Callable[[str], None] = print,
    stages: set[str] | None = None,
) -> Iterator[Context]:
    """The reference build and the decoys for a session of cells; cleaned up after.

    `projects` is where the harness's projects are copied: keep it at the same path as
    `cache` between sessions (the project's folder is part of configure's inputs).
    `stages`: the stages the cells will fault (default all): the extra tasks (boot test,
    dev container) are built for the reference only when one of them is there.
    """
    lxd = probes.Lxd(probes.MAIN_SOCKET)
    decoys = probes.Decoys(lxd, P)
    decoys.make(tmp / "decoys")
    copy_projects(projects)
    ref = Checkout(tmp / "reference", cache, projects)
    try:
        say("faults: the reference build (what every recovery must equal)")
        for name in recovery_tasks(set(STAGES) if stages is None else stages):
            ref.need(name, timeout=3600)
        detach(ref.artifacts)
        ctx = Context(tmp, cache, projects, lxd, decoys, Reference.of(ref), ref, say)
        yield ctx
    finally:
        # Leave nothing of the project in the machine's LXD (the cache keeps its entries:
        # the next session imports and launches again, and configures from its cache).
        probes.remove_project(lxd, P)
        decoys.remove()
        shutil.rmtree(ref.root, ignore_errors=True)  # a failed run's folder keeps its logs
        shutil.rmtree(tmp / "decoys", ignore_errors=True)


def detach(folder: Path) -> None:
    """Make the installed files of a folder copies of their own, not hard links to the
    cache's blobs: the reference must keep its bytes when a cell changes a blob."""
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_nlink > 1:
            copy = path.with_name(f".{path.name}.copy")
            shutil.copy2(path, copy)
            os.replace(copy, path)
