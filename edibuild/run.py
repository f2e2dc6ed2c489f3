"""The one way edibuild runs a command: argv lists, a log file, errors people can act on.

Every command runs in a process group of its own, marked as this build's
(edibuild/orphans.py), and asks the kernel for SIGTERM should edibuild die first. When
edibuild is interrupted (Ctrl-C, SIGTERM, or a timeout) the group gets SIGTERM and
`GRACE_SECONDS` to clean up (mmdebstrap unmounts and removes its tree), then SIGKILL:
Python's own subprocess.run would SIGKILL the command at once and leave that behind.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from edibuild import orphans
from edibuild.errors import CommandFailed
from edibuild.host import toolpath

StrPath = str | os.PathLike[str]
TAIL_LINES = 25
GRACE_SECONDS = 30.0
PR_SET_PDEATHSIG = 1
# The commands running now, in every thread: an interrupt ends them all.
_running: dict[int, subprocess.Popen[bytes]] = {}
_pdeathsig: list[Callable[[], None]] = []


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


def _die_with_parent() -> Callable[[], None]:
    """A preexec function asking for SIGTERM when edibuild dies (prctl PR_SET_PDEATHSIG)."""
    if not _pdeathsig:
        import ctypes  # only when a command runs: not at every doit start

        prctl = ctypes.CDLL(None, use_errno=True).prctl

        def ask() -> None:  # runs in the child between fork and exec: nothing but the call
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

        _pdeathsig.append(ask)
    return _pdeathsig[0]


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the command's process group (its id stays reserved while a member lives)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def end(proc: subprocess.Popen[bytes], grace: float = GRACE_SECONDS) -> None:
    """End a command: SIGTERM to its group, SIGKILL to what is left after `grace` s, reap.

    A second interrupt while waiting goes straight to SIGKILL.
    """
    if proc.returncode is None:
        _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _signal_group(proc, signal.SIGKILL)  # helpers the command left behind go too
        proc.wait()


def terminate_all() -> None:
    """Send SIGTERM to every running command's group (the interrupt handler calls this)."""
    for proc in tuple(_running.values()):
        _signal_group(proc, signal.SIGTERM)


def _feed(proc: subprocess.Popen[bytes], chunks: Iterable[bytes]) -> None:
    """Write `chunks` to the command's stdin, then close it. A command that ends early
    closes the pipe: feeding stops, and its exit status tells what happened."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
        finally:
            proc.stdin.close()


def _communicate(
    args: list[str],
    *,
    cwd: StrPath | None,
    env: dict[str, str],
    input: bytes | Iterable[bytes] | None,
    stdout: int | IO[Any],
    stderr: int | IO[Any],
    timeout: float | None,
    owned: bool,
) -> tuple[int, bytes | None, bytes | None]:
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        process_group=0 if owned else None,
        preexec_fn=_die_with_parent() if owned else None,
    )
    _running[proc.pid] = proc
    try:
        if input is None or isinstance(input, bytes):
            out, err = proc.communicate(input, timeout=timeout)
        else:  # streamed: its output goes to a file, no pipe can fill up meanwhile
            _feed(proc, input)
            out, err = proc.communicate(timeout=timeout)
    except BaseException:  # interrupted or timed out: the command gets to clean up
        end(proc)
        raise
    finally:
        _running.pop(proc.pid, None)
    return proc.returncode, out, err


def _failed(line: str, proc: subprocess.CompletedProcess[bytes], log: Path | None) -> CommandFailed:
    """The error of a command that exited non-zero: the line, how it ended, its output's tail."""
    if log is not None:
        tail, where = _tail(log), f"\n  full log: {log}"
    else:
        tail = (proc.stderr or b"").decode("utf-8", "replace").strip()
        tail, where = "\n".join(tail.splitlines()[-TAIL_LINES:]), ""
    detail = f"\n{tail}" if tail else ""
    return CommandFailed(f'"{line}" {_describe_exit(proc.returncode)}{detail}{where}')


def _environment(env: Mapping[str, str] | None, owned: bool) -> dict[str, str]:
    """The child's environment: edibuild's tool path, marked as this build's when owned."""
    full_env = toolpath.child_environment(env)
    if owned:
        full_env[orphans.OWNER_ENV] = orphans.mark()
    else:
        full_env.pop(orphans.OWNER_ENV, None)
    return full_env


def _open_log(log: Path | None, line: str) -> IO[bytes] | None:
    """Open `log` for appending and write the command line, so the log says what ran."""
    if log is None:
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    logf = log.open("ab")
    logf.write(f"$ {line}\n".encode())
    logf.flush()
    return logf


def run(
    argv: Sequence[StrPath],
    *,
    log: Path | None = None,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | Iterable[bytes] | None = None,
    check: bool = True,
    capture: bool = False,
    timeout: float | None = None,
    owned: bool = True,
    append_to: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv (never through a shell); append its output to `log` if given.

    `input` is bytes, or chunks streamed to stdin as they come (then a `log` is needed
    and `capture` is not allowed: output must not pile up in a pipe while it is fed).
    With `capture`, stdout is returned instead of logged. On failure with `check`,
    raise CommandFailed whose message is the command line and the tail of its log.
    `owned=False` is for a daemon that outlives edibuild on purpose (LXD): it is neither
    marked as the build's nor ended with it. `append_to`: stdout goes to the end of this
    file (a command whose output is an artifact), not to the log.
    """
    args = [os.fspath(a) for a in argv]
    line = command_line(args)
    if input is not None and not isinstance(input, bytes) and (log is None or capture):
        raise ValueError(f"streamed input needs a log and no capture: {line}")
    if append_to is not None and capture:
        raise ValueError(f"stdout cannot go both to a file and back: {line}")
    logf = _open_log(log, line)
    sink = append_to.open("ab") if append_to is not None else None
    stdout = subprocess.PIPE if capture else (sink or logf or subprocess.DEVNULL)
    stderr = logf if logf is not None else subprocess.PIPE
    started = time.monotonic()
    try:
        code, out, err = _communicate(
            args, cwd=cwd, env=_environment(env, owned), input=input, stdout=stdout,
            stderr=stderr, timeout=timeout, owned=owned,
        )  # fmt: skip
        if logf is not None:  # where a stage's time goes, command by command
            logf.write(f"# exit {code} after {time.monotonic() - started:.1f} s\n".encode())
    except FileNotFoundError as exc:
        raise _not_found(args[0], line) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f'"{line}" did not finish within {timeout:.0f} s') from exc
    except KeyboardInterrupt:
        if logf is not None:
            with contextlib.suppress(OSError):
                logf.write(b"# interrupted: the command was ended\n")
        raise
    finally:
        if logf is not None:
            logf.close()
        if sink is not None:
            sink.close()
    proc = subprocess.CompletedProcess(args, code, out, err)
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
