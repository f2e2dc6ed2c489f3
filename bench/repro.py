"""Measure how often the exported rootfs is bit-identical across configure runs.

Runs `doit export:repro-PROJECT` `--runs` times (2 by default) on the same inputs in a
private workspace (each time after the first after `doit clean --forget configure:...`,
so the playbooks really run again; `--record` appends the count to bench/results.md)
and reports which files differ between the two rootfs tarballs, with a reason per file
(content, mtime, mode, owner, type, link, xattrs, only in one). No diffoscope: Python's
tarfile reads the decompressed tars. `--compare A B` only compares two tarballs;
`--export-again A B` repacks two saved configure outputs with the current export code.

The workspace holds its own copy of the projects, artifacts, state and cache (the apt
proxy's too); the project is copied as `repro-PROJECT`, so its LXD containers and
layers never meet those of anybody's builds of PROJECT.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
PROJECT = "qemu-bookworm-amd64"
WORKSPACE = Path("/tmp/edibuild-repro")
# Per-member fields compared, in the order reasons are listed.
FIELDS = ("type", "content", "mode", "owner", "mtime", "link", "xattrs")
CHUNK = 1 << 20
# Largest member whose first differing line `--details` shows.
DETAIL_LIMIT = 1 << 18
RAN = re.compile(r"^\.  (\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Member:
    """What a tar member is made of, as far as reproducibility is concerned."""

    type: str
    content: str
    mode: str
    owner: str
    mtime: str
    link: str
    xattrs: str


@dataclass
class Archive:
    """The members of one tarball, by name, in archive order."""

    path: Path
    members: dict[str, Member] = field(default_factory=dict)
    sha256: str = ""


@dataclass(frozen=True)
class Difference:
    """One file that differs between two archives, and why."""

    name: str
    reasons: tuple[str, ...]

    def line(self) -> str:
        """The report line: name and reasons."""
        return f"{self.name}: {', '.join(self.reasons)}"


def _digest(stream: IO[bytes] | None) -> str:
    """sha256 of a member's data (empty for members without data)."""
    h = hashlib.sha256()
    if stream is not None:
        while block := stream.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _xattrs(info: tarfile.TarInfo) -> str:
    """The member's extended attributes and ACLs (pax SCHILY.* records), sorted."""
    found = sorted((k, v) for k, v in info.pax_headers.items() if k.startswith("SCHILY."))
    return ";".join(f"{k}={v}" for k, v in found)


def describe(info: tarfile.TarInfo, data: IO[bytes] | None) -> Member:
    """Describe one tar member (reads its data, if any, to hash it)."""
    return Member(
        type=info.type.decode(),
        content=f"{info.size}:{_digest(data)}" if info.isreg() else "",
        mode=oct(info.mode),
        owner=f"{info.uid}:{info.gid}",
        mtime=str(info.mtime),
        link=info.linkname,
        xattrs=_xattrs(info),
    )


@contextlib.contextmanager
def open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """Open a .tar or .tar.zst for streaming (zstd decompresses in a pipe)."""
    if path.suffix != ".zst":
        with tarfile.open(path, mode="r|") as tar:
            yield tar
        return
    proc = subprocess.Popen(["zstd", "-dcq", str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            yield tar
    finally:
        proc.stdout.close()
        if proc.wait() not in (0, -13):  # -13: SIGPIPE after an early stop
            raise SystemExit(f"repro: zstd could not decompress {path}")


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return _digest(f)


def read_archive(path: Path) -> Archive:
    """Read every member of a tarball (names normalised without a leading './')."""
    archive = Archive(path, sha256=_file_sha256(path))
    with open_tar(path) as tar:
        for info in tar:
            data = tar.extractfile(info) if info.isreg() else None
            archive.members[normalise(info.name)] = describe(info, data)
    return archive


def normalise(name: str) -> str:
    """A member name without './' in front and '/' at the end ('.' for the root)."""
    name = name.removeprefix("./").rstrip("/")
    return name or "."


def compare(a: Archive, b: Archive) -> list[Difference]:
    """The members that differ between two archives, sorted by name, with reasons."""
    found = []
    for name in sorted(a.members.keys() | b.members.keys()):
        left, right = a.members.get(name), b.members.get(name)
        if left is None or right is None:
            found.append(Difference(name, ("only in " + ("B" if left is None else "A"),)))
        elif left != right:
            reasons = tuple(f for f in FIELDS if getattr(left, f) != getattr(right, f))
            found.append(Difference(name, reasons))
    if not found and a.sha256 != b.sha256:
        order = list(a.members) != list(b.members)
        why = "member order" if order else "archive headers or padding"
        found.append(Difference("(archive)", (why,)))
    return found


def _payloads(path: Path, names: set[str]) -> dict[str, bytes]:
    """The data of the named (small) regular members of a tarball."""
    found: dict[str, bytes] = {}
    with open_tar(path) as tar:
        for info in tar:
            name = normalise(info.name)
            if name in names and info.isreg() and info.size <= DETAIL_LIMIT:
                data = tar.extractfile(info)
                found[name] = data.read() if data is not None else b""
    return found


def first_difference(left: bytes, right: bytes) -> str:
    """A short hint of how two contents differ: the first differing line, or offset."""
    if b"\0" in left[:4096] or b"\0" in right[:4096]:
        offset = next((i for i, (x, y) in enumerate(zip(left, right, strict=False)) if x != y), 0)
        return f"binary, {len(left)} vs {len(right)} bytes, first difference at byte {offset}"
    for x, y in zip(left.splitlines(), right.splitlines(), strict=False):
        if x != y:
            a, b = (v[:100].decode(errors="replace") for v in (x, y))
            return f"A: {a!r} B: {b!r}"
    return f"text, {len(left.splitlines())} vs {len(right.splitlines())} lines"


def details(a: Path, b: Path, diffs: Sequence[Difference], limit: int = 40) -> list[str]:
    """First-difference hints for up to `limit` members whose content differs."""
    names = {d.name for d in diffs if "content" in d.reasons}
    names = set(sorted(names)[:limit])
    left, right = _payloads(a, names), _payloads(b, names)
    return [
        f"  {n}: {first_difference(left[n], right[n])}"
        for n in sorted(names)
        if n in left and n in right
    ]


def report(a: Path, b: Path, show_details: bool) -> bool:
    """Compare two tarballs, print the differences and the summary; True if identical."""
    started = time.monotonic()
    left, right = read_archive(a), read_archive(b)
    diffs = compare(left, right)
    for diff in diffs:
        print(diff.line())
    if show_details and diffs:
        print("content differences:")
        for line in details(a, b, diffs):
            print(line)
    identical = left.sha256 == right.sha256
    files = [d for d in diffs if d.name != "(archive)"]
    print(
        f"compared {len(left.members)} and {len(right.members)} members "
        f"in {time.monotonic() - started:.1f} s"
    )
    print(f"identical: {'yes' if identical else 'no'}, {len(files)} differing files")
    return identical


def environment(workspace: Path) -> dict[str, str]:
    """The environment pointing doit (and the apt proxy's cache) at the workspace."""
    env = dict(os.environ)
    env.update(
        EDIBUILD_PROJECTS=str(workspace / "projects"),
        EDIBUILD_ARTIFACTS=str(workspace / "artifacts"),
        EDIBUILD_STATE=str(workspace / "state"),
        EDIBUILD_CACHE=str(workspace / "state" / "cache"),
    )
    return env


def doit(workspace: Path, *args: str) -> tuple[float, list[str]]:
    """Run doit in the workspace; return its wall time and the tasks that ran."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "doit", *args],
        cwd=REPO,
        env=environment(workspace),
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    log = workspace / "logs" / f"{int(time.time())}-{'-'.join(args).replace(':', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"repro: doit {' '.join(args)} failed (log: {log})")
    return seconds, RAN.findall(proc.stdout + proc.stderr)


def keep(workspace: Path, project: str, run: int) -> Path:
    """Hard-link this run's configure and export outputs into runs/<run>/."""
    source = workspace / "artifacts" / project
    target = workspace / "runs" / str(run)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in ("configured.tar.zst", "rootfs.tar.zst"):
        os.link(source / name, target / name)
    return target / "rootfs.tar.zst"


def copy_projects(workspace: Path, project: str) -> str:
    """Copy the projects into the workspace, `project` as repro-<project>; return that name."""
    target = workspace / "projects"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REPO / "projects", target)
    name = f"repro-{project}"
    (target / f"{project}.yml").rename(target / f"{name}.yml")
    return name


def build_runs(workspace: Path, project: str, runs: int) -> list[Path]:
    """Build export `runs` times, forgetting configure in between; return the tarballs."""
    project = copy_projects(workspace, project)
    tarballs = []
    for run in range(1, runs + 1):
        if run > 1:
            doit(workspace, "clean", "--forget", f"configure:{project}")
        seconds, ran = doit(workspace, f"export:{project}")
        print(f"run {run}: {seconds:.1f} s, ran {', '.join(ran) or 'nothing'}", flush=True)
        tarballs.append(keep(workspace, project, run))
    return tarballs


def record(project: str, runs: list[Path], identical: int) -> None:
    """Append the measurement to bench/results.md."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (
        f"\n## Reproducibility of the exported rootfs\n\n`python bench/repro.py --runs "
        f"{len(runs)} --record`, {stamp}: {len(runs)} configure runs of `{project}` from "
        f"scratch (no layers), each exported; the rootfs tarball was bit-identical to the "
        f"first run's in **{identical} of {len(runs) - 1}** repeated runs.\n"
    )
    results = REPO / "bench" / "results.md"
    results.write_text((results.read_text() if results.exists() else "") + section)


def export_again(workspace: Path, configured: Sequence[Path], epoch: int) -> list[Path]:
    """Unpack, scrub and pack saved configure outputs with the current export code."""
    sys.path.insert(0, str(REPO))
    from edibuild.run import run
    from stages import export

    tars = []
    for index, source in enumerate(configured, 1):
        work = workspace / "export-again" / str(index)
        shutil.rmtree(work, ignore_errors=True)
        tree = work / "rootfs"
        tree.mkdir(parents=True)
        started = time.monotonic()
        run(export.unpack_command(source, tree))
        export.scrub(tree)
        target = work / "rootfs.tar"
        run(export.tar_command(tree, target, epoch), env={"SOURCE_DATE_EPOCH": str(epoch)})
        shutil.rmtree(tree)
        print(f"export {index}: {time.monotonic() - started:.1f} s", flush=True)
        tars.append(target)
    return tars


def main() -> int:
    """Build twice (or compare given tarballs) and print the differing files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=PROJECT)
    parser.add_argument("--workspace", type=Path, default=WORKSPACE)
    parser.add_argument("--details", action="store_true", help="show first content difference")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    what.add_argument("--export-again", nargs=2, type=Path, metavar=("CONF_A", "CONF_B"))
    parser.add_argument("--epoch", type=int, default=1704067200, help="for --export-again")
    parser.add_argument("--runs", type=int, default=2, help="configure runs to compare (>= 2)")
    parser.add_argument("--record", action="store_true", help="append to bench/results.md")
    args = parser.parse_args()
    workspace = args.workspace.resolve()
    if args.compare:
        a, b = args.compare
    elif args.export_again:
        a, b = export_again(workspace, args.export_again, args.epoch)
    else:
        tarballs = build_runs(workspace, args.project, max(args.runs, 2))
        same = [report(tarballs[0], other, args.details) for other in tarballs[1:]]
        print(f"bit-identical to run 1: {sum(same)} of {len(same)} repeated runs")
        if args.record:
            record(args.project, tarballs, sum(same))
        return 0 if all(same) else 1
    return 0 if report(a, b, args.details) else 1


if __name__ == "__main__":
    sys.exit(main())
