"""Command line of the host setup: `python -m edibuild.host setup|check|emulation ARCH|report`.

`./edibuild.sh` and `./run-tests` call `setup` (with the system Python, before the
virtualenv exists) the first time and `check` on every later run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from edibuild.errors import EdibuildError
from edibuild.host import commands, packages
from edibuild.host.emulation import ensure_emulation
from edibuild.host.lxd_service import ensure_lxd
from edibuild.run import say

REPO = Path(__file__).resolve().parents[2]


def _lxd_or_warning(repo: Path) -> str | None:
    """Ensure LXD, but only warn on failure: commands that do not need LXD still work."""
    try:
        return ensure_lxd(repo)
    except EdibuildError as exc:
        say(f"warning: LXD is not usable, stages that need it will fail: {exc}")
        return None


def report(repo: Path, lxd_socket: str | None) -> None:
    """Say which host tools are present (and their package when one is missing)."""
    missing = []
    for command, package in commands.HOST_COMMANDS:
        if shutil.which(command) is None:
            missing.append(f"{command} (apt-get install {package})")
    say(f"virtualenv: {repo / packages.VENV}")
    say(f"LXD socket: {lxd_socket or 'none'}")
    found = len(commands.HOST_COMMANDS) - len(missing)
    say(f"host tools: {found} of {len(commands.HOST_COMMANDS)} present")
    for line in missing:
        say(f"  missing: {line}")


def setup(repo: Path, force: bool) -> None:
    """Install what is missing (Debian packages, virtualenv), start LXD, report, stamp."""
    if not force and packages.setup_is_current(repo):
        _lxd_or_warning(repo)
        return
    log = repo / ".edibuild" / "setup.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"setting up this machine for edibuild (log: {log})")
    installed = packages.install_debian_packages(packages.DEBIAN_PACKAGES, log=log)
    if not installed:
        say("Debian packages: all present")
    packages.ensure_venv(repo, log=log)
    packages.write_stamp(repo)
    report(repo, _lxd_or_warning(repo))
    say("setup done")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edibuild.host", description=__doc__)
    parser.add_argument("--repo", type=Path, default=REPO, help="the edibuild checkout")
    sub = parser.add_subparsers(dest="command", required=True)
    setup_cmd = sub.add_parser("setup", help="install packages and the virtualenv, start LXD")
    setup_cmd.add_argument("--force", action="store_true", help="even if the stamp is current")
    sub.add_parser("check", help="make sure LXD runs (fast; warns only)")
    emulation = sub.add_parser("emulation", help="enable qemu emulation for architectures")
    emulation.add_argument("architectures", nargs="+", metavar="ARCH")
    sub.add_parser("report", help="say which host tools are present")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one host command; print user errors as one message and return non-zero."""
    args = _parser().parse_args(argv)
    repo: Path = args.repo.resolve()
    try:
        if args.command == "setup":
            setup(repo, args.force)
        elif args.command == "check":
            _lxd_or_warning(repo)
        elif args.command == "emulation":
            for arch in args.architectures:
                done = ensure_emulation(arch)
                say(f"{arch}: " + ("; ".join(done) if done else "runs already"))
        else:
            report(repo, _lxd_or_warning(repo))
    except EdibuildError as exc:
        print(f"edibuild: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
