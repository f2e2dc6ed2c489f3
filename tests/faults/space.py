"""The full-disk faults: the scratch space, the cache or the artifacts folder fills up while
a stage builds (a small tmpfs sized from what the reference build needed).
"""

from __future__ import annotations

from pathlib import Path

from tests.faults import probes
from tests.faults.checkout import UPSTREAM, Checkout
from tests.faults.checks import check_message, check_stale, finish_checks, recover, tail
from tests.faults.harness import Cellrun, force, task, warm


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
                f"the full folder {mount} is not named: {tail(result.output)}"
            )
        if "needs about" not in result.output:
            run.outcome.messages.append(f"no size the stage needs: {tail(result.output)}")
    check_stale(run, "after the disk filled")
    probes.resize(mount, 32 << 30)  # space freed
    recover(run, ck)
    finish_checks(run)
