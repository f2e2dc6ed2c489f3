"""The corruption fault: one byte of a cached blob changed (its mtime kept or not); the next
build must catch it before use, and its bytes must end up nowhere.
"""

from __future__ import annotations

import os

from edibuild.store.fsutil import sha256_file
from tests.faults.checkout import UPSTREAM, Checkout, downstream, recovery_tasks
from tests.faults.checks import check_leaks, check_outputs, check_stale, recover, tail
from tests.faults.harness import Cellrun, task


def corrupt_fault(run: Cellrun) -> None:
    a = run.checkout("a")
    stages = {run.stage}
    for name in recovery_tasks(stages):
        a.need(name)
    outputs = a.pointer(run.stage) or {}
    output = outputs[run.rng.choice(sorted(outputs))]
    bad, keep_mtime = corrupt_blob(run, output)
    run.outcome.landed = True
    b = run.checkout("b")  # a fresh checkout: the stage comes from the cache... or not
    build_fresh(run, b, stages)
    readers = rebuild_readers(run, a, output, keep_mtime)
    recover(run, a, stages | readers)
    for ck in (a, b):  # the changed bytes are nowhere: not installed, not in any output
        for path in ck.artifacts.iterdir():
            if path.is_file() and sha256_file(path) == bad:
                run.outcome.stale.append(f"{path.name} in {ck.root.name} holds the changed bytes")
    check_stale(run, "after the corrupted blob")
    for ck in (a, b):
        check_outputs(run, ck)
    check_leaks(run, "after recovery")


def corrupt_blob(run: Cellrun, output: dict[str, object]) -> tuple[str, bool]:
    """Change one random byte of the output's blob in the shared cache, its mtime kept or
    new (a random choice); return the blob's new digest and whether the mtime was kept."""
    digest = str(output["sha256"])
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
    run.note(f"byte {offset} of {output['file']} changed, mtime {'kept' if keep_mtime else 'new'}")
    return bad, keep_mtime


def build_fresh(run: Cellrun, ck: Checkout, stages: set[str]) -> None:
    """Build the stages in a fresh checkout: the corrupted blob must be reported."""
    said = ""
    for name in recovery_tasks(stages):
        result = ck.run(name)
        said += result.output
        if result.code != 0:
            run.outcome.failed.append(f"`doit {name}` failed: {tail(result.output)}")
    if "was changed after it was stored" not in said:
        run.outcome.stale.append(f"the corrupted blob was not reported: {tail(said)}")


def rebuild_readers(
    run: Cellrun, ck: Checkout, output: dict[str, object], keep_mtime: bool
) -> set[str]:
    """The stages of checkout `ck` (which still has the corrupted file installed, the same
    inode) that must build again: one that reads it, if any; else its changed file goes
    when nothing would tell it changed (not the harness's to judge)."""
    later = downstream(run.stage)
    readers: set[str] = set()
    if later:
        reader = next(s for s in later if run.stage in UPSTREAM[s])
        ck.need("clean", "--forget", task(reader))  # a stage that reads it builds again
        readers.add(reader)
    elif keep_mtime:
        run.note("checkout a keeps its changed file: nothing reads it, nothing says it changed")
        ck.artifacts.joinpath(str(output["file"])).unlink()  # not the harness's to judge
        for path in (ck.artifacts / ".state").glob(f"{run.stage}.*"):
            path.unlink()
    return readers
