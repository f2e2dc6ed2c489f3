"""The concurrency faults: a second doit on the same checkout, and two checkouts building the
same stage at once on one cache.
"""

from __future__ import annotations

from tests.faults.checks import finish_checks, recover, tail
from tests.faults.harness import Cellrun, force, task, warm


def second_doit(run: Cellrun) -> None:
    ck = run.checkout()
    warm(ck, run.stage)
    force(run, ck, run.stage)
    first, second = ck.start(task(run.stage)), ck.start(task(run.stage))
    results = [first.finish(3600), second.finish(3600)]
    run.outcome.landed = True
    for result in results:
        if result.code != 0:
            run.outcome.failed.append(f"one of two doit runs failed: {tail(result.output)}")
        if "Traceback" in result.output:
            run.outcome.messages.append(f"a traceback: {tail(result.output)}")
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
            run.outcome.failed.append(f"a checkout's build failed: {tail(result.output)}")
        if "Traceback" in result.output:
            run.outcome.messages.append(f"a traceback: {tail(result.output)}")
    recover(run, one)
    recover(run, two)
    finish_checks(run, one, two)
