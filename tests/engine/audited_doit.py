"""Run `doit ARGS` under a Python audit hook; write what it did to a JSON file (for tests).

Usage: python audited_doit.py REPORT.json ARGS...

The report lists every process edibuild (or anything it ran in-process) tried to start
and every file or folder it opened or listed, so a test can say that planning commands
start nothing and read nothing outside the places they may.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys

PROCESS_EVENTS = (
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "pty.spawn", "os.startfile",
)  # fmt: skip
PATH_EVENTS = ("open", "os.listdir", "os.scandir", "os.chdir", "shutil.rmtree", "os.remove")


def main() -> None:
    report = sys.argv[1]
    processes: list[str] = []
    paths: set[str] = set()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event in PROCESS_EVENTS:
            processes.append(f"{event} {args!r}"[:300])
        elif event in PATH_EVENTS and args and isinstance(args[0], str | bytes | os.PathLike):
            path = os.fsdecode(args[0])
            paths.add(os.path.abspath(path))

    def write() -> None:
        data = {"processes": processes, "paths": sorted(paths)}
        with open(report, "w") as handle:
            json.dump(data, handle)

    atexit.register(write)
    sys.addaudithook(hook)
    sys.argv = ["doit", *sys.argv[2:]]
    runpy.run_module("doit", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
