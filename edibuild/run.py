"""The one way edibuild runs a command: argv lists, a log file, errors people can act on."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from edibuild.errors import CommandFailed
from edibuild.host import toolpath

StrPath = str | os.PathLike[str]
TAIL_LINES = 25


def command_line(argv: Sequence[StrPath]) -> str:
    """Return argv as a shell line a user can copy and re-run."""
    return shlex.join(os.fspath(a) for a in argv)


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"returned non-zero exit code {code}"


def _not_found(command: str, line: str) -> CommandFailed:
    """The error for a program that is not there: where we looked, and its Debian package."""
    from edibuild.host.commands import package_for

    package = package_for(command)
    hint = f"install it with: apt-get install {package}" if package else None
    return CommandFailed(f"cannot run {line}: {toolpath.not_found(command)}", hint=hint)


def _failed(line: str, proc: subprocess.CompletedProcess[bytes], log: Path | None) -> CommandFailed:
    """The error of a command that exited non-zero: the line, how it ended, its output's tail."""
    if log is not None:
        tail, where = _tail(log), f"\n  full log: {log}"
    else:
        tail = (proc.stderr or b"").decode("utf-8", "replace").strip()
        tail, where = "\n".join(tail.splitlines()[-TAIL_LINES:]), ""
    detail = f"\n{tail}" if tail else ""
    return CommandFailed(f'"{line}" {_describe_exit(proc.returncode)}{detail}{where}')


def run(
    argv: Sequence[StrPath],
    *,
    log: Path | None = None,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    capture: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv (never through a shell); append its output to `log` if given.

    With `capture`, stdout is returned instead of logged. On failure with `check`,
    raise CommandFailed whose message is the command line and the tail of its log.
    """
    args = [os.fspath(a) for a in argv]
    full_env = toolpath.child_environment(env)
    line = command_line(args)
    logf = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        logf = log.open("ab")
        logf.write(f"$ {line}\n".encode())
        logf.flush()
    stdout = subprocess.PIPE if capture else (logf or subprocess.DEVNULL)
    stderr = logf if logf is not None else subprocess.PIPE
    started = time.monotonic()
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=full_env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            timeout=timeout,
            check=False,
        )
        if logf is not None:  # where a stage's time goes, command by command
            seconds = time.monotonic() - started
            logf.write(f"# exit {proc.returncode} after {seconds:.1f} s\n".encode())
    except FileNotFoundError as exc:
        raise _not_found(args[0], line) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f'"{line}" did not finish within {timeout:.0f} s') from exc
    finally:
        if logf is not None:
            logf.close()
    if check and proc.returncode != 0:
        raise _failed(line, proc, log)
    return proc


def output(
    argv: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run argv and return its stdout as text (stripped)."""
    proc = run(argv, capture=True, cwd=cwd, env=env, timeout=timeout)
    return proc.stdout.decode("utf-8", "replace").strip()


def say(message: str) -> None:
    """Tell the user what edibuild is doing (stderr, so doit's output stays readable)."""
    print(f"edibuild: {message}", file=sys.stderr, flush=True)
