"""The `edibuild` command: `edibuild init DIR`, and otherwise doit on the dodo.py here.

`edibuild image:NAME` is `doit image:NAME` (doit comes with edibuild); `edibuild init
DIR` writes a project repository of the user's own (edibuild/newrepo.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from edibuild.errors import EdibuildError

USAGE = """\
usage: edibuild init DIR        write a new project repository in DIR
       edibuild DOIT-ARGS...    run doit here (edibuild list, edibuild image:NAME, ...)
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one edibuild command; errors are one message and a non-zero exit."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"], ["help"]) and len(args) == 1:
        print(USAGE, end="")
        return 0
    if args[:1] == ["init"]:
        return _init(args[1:])
    from doit.doit_cmd import DoitMain

    return int(DoitMain().run(args) or 0)


def _init(args: list[str]) -> int:
    if len(args) != 1 or args[0].startswith("-"):
        print(USAGE, end="", file=sys.stderr)
        return 2
    from edibuild.newrepo import SAMPLE, init

    target = Path(args[0])
    try:
        written = init(target)
    except EdibuildError as exc:
        print(f"edibuild: error: {exc}", file=sys.stderr)
        return 1
    print(f"edibuild: wrote {len(written)} files in {target}:")
    for path in written:
        print(f"  {path}")
    print(f"next: cd {target} && doit list && doit image:{SAMPLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
