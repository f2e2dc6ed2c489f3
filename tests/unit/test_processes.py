"""Commands end with edibuild: SIGTERM and a grace period on interrupt, SIGTERM when
edibuild is killed, and a killed build's leftovers found by their owner mark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edibuild import orphans, run, space

TRAP = """
trap 'echo cleaned > "$1"; exit 3' TERM
echo started > "$1"
sleep 60 & wait
"""


def wait_for(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def test_an_interrupt_gives_the_command_sigterm_and_time_to_clean_up(tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    def interrupt() -> None:
        wait_for(lambda: marker.exists())
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: KeyboardInterrupt in the main thread

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run.run(["bash", "-c", TRAP, "trap", marker], log=tmp_path / "log")
    assert marker.read_text() == "cleaned\n"  # its trap ran: not killed outright
    assert not run._running
    assert "# interrupted" in (tmp_path / "log").read_text()


def test_every_command_carries_the_owner_mark_and_a_group_of_its_own() -> None:
    out = run.output(["bash", "-c", 'echo "$EDIBUILD_OWNER $(ps -o pgid= $$) $$"'])
    mark, pgid, pid = out.split()
    assert mark == orphans.mark()
    assert pgid == pid  # its own process group: an interrupt ends all of it


def test_a_daemon_started_on_purpose_is_not_marked() -> None:
    env = run.run(["env"], capture=True, owned=False).stdout.decode()
    assert orphans.OWNER_ENV not in env


def test_a_command_gets_sigterm_when_edibuild_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    script = (
        "import sys; from edibuild import run; "
        f"run.run(['bash', '-c', {TRAP!r}, 'trap', {str(marker)!r}])"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    assert wait_for(lambda: marker.exists())
    parent.kill()  # SIGKILL: edibuild cannot clean up; the kernel tells the command
    parent.wait()
    assert wait_for(lambda: marker.read_text() == "cleaned\n")


def test_processes_of_an_ended_build_are_found_and_ended() -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead_mark = orphans.mark(ended.pid)
    env = {**os.environ, orphans.OWNER_ENV: dead_mark}
    stray = subprocess.Popen(["sleep", "60"], env=env)
    mine = subprocess.Popen(["sleep", "60"], env={**os.environ, orphans.OWNER_ENV: orphans.mark()})
    try:
        found = orphans.find()
        assert [o.pid for o in found if o.owner == dead_mark] == [stray.pid]
        assert mine.pid not in [o.pid for o in found]  # this process's own: never
        orphans.end([o for o in found if o.owner == dead_mark], grace=5)
        assert stray.wait(10) == -signal.SIGTERM
    finally:
        for proc in (stray, mine):
            proc.kill()
            proc.wait()


def test_a_full_disk_is_recognised_in_errors_and_command_logs() -> None:
    assert space.is_full(OSError(28, "No space left on device"))
    assert space.is_full(
        RuntimeError('"tar ..." failed\ntar: write error: No space left on device')
    )
    wrapped = RuntimeError("copy failed")
    wrapped.__cause__ = OSError(28, "No space left on device")
    assert space.is_full(wrapped)
    assert not space.is_full(RuntimeError("mkfs.ext4: Could not allocate block"))


def test_the_full_disk_message_names_the_folder_and_what_the_stage_needs(tmp_path: Path) -> None:
    need = space.Need(scratch=3 << 30, outputs=1 << 30, source="measured on its last build")
    places = space.places(tmp_path / "cache" / "tmp", tmp_path / "cache", tmp_path / "art", need,
                          copies=False)  # fmt: skip
    free, _ = space.free_bytes(tmp_path)
    message, hint = space.full_message(places, need)
    assert str(tmp_path / "cache" / "tmp") in message and "the scratch space" in message
    assert "(one file system)" in message  # scratch, cache, artifacts share tmp_path's disk
    assert space.human(free) in message and "measured on its last build" in message
    assert "doit trim" in hint


def test_peak_usage_of_a_folder_is_sampled(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    with space.Peak(tmp_path) as peak:
        assert peak.measure() >= 100_000
        (tmp_path / "a").unlink()
        assert peak.measure() >= 100_000  # the peak stays
    assert space.usage(tmp_path) < 100_000


def test_streamed_input_reaches_the_command_as_it_comes(tmp_path: Path) -> None:
    target, log = tmp_path / "out", tmp_path / "log"
    chunks = (bytes([65 + i]) * 100_000 for i in range(20))  # 2 MB, more than a pipe holds
    run.run(["dd", f"of={target}", "bs=64k"], input=chunks, log=log)
    assert target.read_bytes() == b"".join(bytes([65 + i]) * 100_000 for i in range(20))


def test_a_command_that_stops_reading_ends_the_stream_and_its_status_counts(tmp_path: Path) -> None:
    fed = []

    def chunks() -> Iterator[bytes]:
        for i in range(1000):  # 100 MB that `head` never reads
            fed.append(i)
            yield b"x" * 100_000

    run.run(["head", "-c", "10"], input=chunks(), log=tmp_path / "ok.log")
    assert len(fed) < 1000
    with pytest.raises(run.CommandFailed, match="non-zero exit code 3"):
        run.run(["sh", "-c", "exit 3"], input=iter([b"a" * 1_000_000]), log=tmp_path / "bad.log")


def test_streamed_input_needs_a_log_and_no_capture() -> None:
    with pytest.raises(ValueError, match="streamed input"):
        run.run(["cat"], input=iter([b"a"]))


def test_stdout_can_go_to_the_end_of_a_file_and_stderr_to_the_log(tmp_path: Path) -> None:
    """Two commands append one after the other (two zstd frames make one archive so)."""
    target, log = tmp_path / "out", tmp_path / "log"
    target.write_bytes(b"start ")
    run.run(["sh", "-c", "printf one; echo oops >&2"], log=log, append_to=target)
    run.run(["printf", " two"], log=log, append_to=target)
    assert target.read_bytes() == b"start one two"
    assert "oops\n" in log.read_text() and "\none" not in log.read_text()
    with pytest.raises(ValueError, match="both to a file"):
        run.run(["true"], capture=True, append_to=target)
