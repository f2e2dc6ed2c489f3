"""What must hold after a fault, checked: nothing stale, the outputs equal the reference's,
nothing left behind, one clear message, and a recovery that completes.

The promise itself is listed in tests/faults/cells.py's docstring; every fault kind calls
these after its fault and after the recovery.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from edibuild.store.cache import is_digest
from edibuild.store.fsutil import read_json, sha256_file
from tests.faults import probes
from tests.faults.checkout import STAGES, Checkout, Run, recovery_tasks
from tests.faults.harness import CLEANED, DEV_CONTAINER, REPRODUCIBLE, Cellrun, P, release_of


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
        run.outcome.messages.append(f"a traceback: {tail(out)}")
    if want and want.lower() not in out.lower():
        run.outcome.messages.append(f"no {want!r} in the output: {tail(out)}")
    log = str(run.checkouts[0].log(stage))
    if result.code != 0 and not any(str(ck.log(stage)) in out for ck in run.checkouts):
        run.outcome.messages.append(f"the log {log} is not named: {tail(out)}")


def tail(text: str, lines: int = 12) -> str:
    return "\n    " + "\n    ".join(text.strip().splitlines()[-lines:])


def recover(run: Cellrun, ck: Checkout, stages: set[str] | None = None) -> bool:
    """Run the plain build; it must complete."""
    for name in recovery_tasks(stages if stages is not None else {run.stage}):
        result = ck.run(name, timeout=3600)
        if result.code != 0:
            run.outcome.failed.append(
                f"`doit {name}` failed ({result.code}): {tail(result.output)}"
            )
            return False
        if "Traceback" in result.output:
            run.outcome.messages.append(f"a traceback in `doit {name}`: {tail(result.output)}")
        for line in result.output.splitlines():
            if CLEANED.search(line):
                run.note("recovery: " + line.removeprefix("edibuild: ").strip())
    return True


def check_outputs(run: Cellrun, ck: Checkout) -> None:
    """The outputs equal the reference's (bit for bit where the stage is reproducible)."""
    ref = run.ctx.reference
    got = ck.digests()
    release = release_of(ck.info("bootstrap"))
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
    """Nothing left by the harness's doit runs (see tests/faults/cells.py's docstring)."""
    leaks = run.outcome.leaks
    roots = [run.root, *{ck.cache for ck in run.checkouts}]
    marks = [m for ck in run.checkouts for m in ck.marks]
    proxies = probes.apt_proxies({ck.cache for ck in run.checkouts})
    leaks += [f"{when}: {p}" for p in probes.processes(marks, [run.root], allowed=proxies)]
    leaks += [f"{when}: mount {m}" for m in probes.mounts_under(roots) if not _ours(run, m)]
    leaks += [f"{when}: loop device {d}" for d in probes.loops_under(roots)]
    lxds = [run.lxd] if run.lxd is not None else [run.ctx.lxd]
    states = []
    for lxd in lxds:
        if not lxd.answers():
            continue
        state = probes.lxd_state(lxd, P)
        states.append(state)
        for name, inst in state.instances.items():
            if inst["owner"] in marks:
                leaks.append(f"{when}: LXD container {name} of a faulted run")
        leaks += [f"{when}: {leak}" for leak in probes.forkproxies(state, P)]
        if not processes_only:
            decoy_images = {d.unaliased for d in [*run.decoys, run.ctx.decoys]}
            for fingerprint in decoy_images:
                state.images.pop(fingerprint, None)
            found = probes.lxd_leaks(state, DEV_CONTAINER, P)
            leaks += [f"{when}: {leak}" for leak in found]
    if processes_only:
        return
    # The dev container lives in the machine's LXD even while a cell uses a private one.
    if run.lxd is not None and run.ctx.lxd.answers():
        states.append(probes.lxd_state(run.ctx.lxd, P))
    users = probes.proxy_users(states, DEV_CONTAINER)
    proxies |= probes.apt_proxies(Path(u).parent for u in users if u)  # a cell's own cache
    leaks += [f"{when}: {s}" for s in probes.unused_proxies(proxies, users)]
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
