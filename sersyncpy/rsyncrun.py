"""Running rsync: one call, or a list of paths in as many calls as its arguments need; the
tail of its stderr, its --stats, a stop or a stall (stall.py) ending it early; never a shell.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from sersyncpy.rsync import OK_CODES, invocations

logger = logging.getLogger(__name__)

STDERR_KEPT = 256 * 1024
STOP_POLL_SECONDS = 0.2  # how soon a run that may be stopped (or restarted) notices
TERM_GRACE_SECONDS = 1.0
# The code of a transfer restarted because it stalled (stall.py): rsync's own for a timeout.
STALLED = 30


class Watchdog(Protocol):
    """Asked while an rsync runs whether it is stuck for good (stall.Stall)."""

    def stuck(self, pid: int) -> bool: ...


@dataclass(frozen=True)
class Result:
    code: int
    seconds: float
    stderr: str
    files: int = 0  # regular files transferred (from --stats)
    sent: int = 0  # bytes sent, protocol included (from --stats)
    calls: int = 1  # rsync processes run (run_paths: one per chunk of arguments)

    @property
    def ok(self) -> bool:
        return self.code in OK_CODES


def parse_stats(stdout: bytes) -> tuple[int, int]:
    """(files transferred, bytes sent) from rsync's --stats lines; 0 for what is missing."""
    files = sent = 0
    for line in stdout.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(":")
        number = value.split(" (")[0].strip().replace(",", "").replace(".", "")
        if not number.isdigit():
            continue
        if name == "Number of regular files transferred":
            files = int(number)
        elif name == "Total bytes sent":
            sent = int(number)
    return files, sent


# rsync reads these to decide how it passes names to a remote shell: RSYNC_OLD_ARGS=1 puts
# them on ssh's command line unescaped, RSYNC_PROTECT_ARGS=0 turns -s's default off. Never
# inherited, whoever started sersyncpy.
SCRUBBED_ENVIRONMENT = ("RSYNC_OLD_ARGS", "RSYNC_PROTECT_ARGS")


def environment() -> dict[str, str]:
    """The environment rsync runs in: ours, without SCRUBBED_ENVIRONMENT."""
    env = dict(os.environ)
    for name in SCRUBBED_ENVIRONMENT:
        env.pop(name, None)
    return env


def run(
    argv: Sequence[str], cwd: str, stdin: bytes = b"", stop: Optional[threading.Event] = None,
    watchdog: Optional[Watchdog] = None,
) -> Result:
    """Run one rsync in `cwd`; never raises for rsync's own failures. When `stop` is set
    (a long full sync at shutdown), or `watchdog` finds it stuck, rsync gets SIGTERM, which
    removes its temporary files; a stuck one ends with code STALLED."""
    logger.debug("rsync in %s: %s", cwd, argv)
    start = time.monotonic()
    # stderr goes to an unnamed file of which only the end is read: a batch whose files
    # vanish under it has rsync say so once per file (2 MB of it, seen under stress-ng).
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=errors, env=environment(),
            )
        except FileNotFoundError as exc:
            return Result(127, time.monotonic() - start, str(exc))
        except OSError as exc:  # cwd vanished, too many processes...
            return Result(11, time.monotonic() - start, str(exc))
        out, _, stuck = _communicate(proc, stdin, stop, watchdog)
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - 4 * STDERR_KEPT))  # UTF-8: <= 4 B
        err = errors.read()
    if stop is not None and stop.is_set():
        return Result(20, time.monotonic() - start, "stopped: sersyncpy is stopping")
    if stuck:
        return Result(STALLED, time.monotonic() - start, "restarted: the transfer made no "
                      "progress across an outage of the remote, which answers again")
    text = err.decode("utf-8", "replace").strip()
    # Enough to name the failed paths of a large batch (rsync_failures); not unbounded.
    return Result(proc.returncode, time.monotonic() - start, text[-STDERR_KEPT:],
                  *parse_stats(out))


def run_paths(argv: Sequence[str], cwd: str, paths: Sequence[str],
              stop: Optional[threading.Event] = None,
              watchdog: Optional[Callable[[], Watchdog]] = None) -> Result:
    """Run a --files-from=- call of rsync.*_argv over `paths` as its `invocations`; one
    Result for them all: the first failure's code (a later chunk is not tried after a
    failure other than a partial transfer), times, stderr and counts added up."""
    results: list[Result] = []
    for call, stdin in invocations(argv, paths):
        results.append(run(call, cwd, stdin, stop, watchdog() if watchdog else None))
        if results[-1].code not in OK_CODES and results[-1].code != 23:
            break
    if len(results) == 1:
        return results[0]
    failed = [r.code for r in results if r.code not in OK_CODES]
    return Result(
        failed[0] if failed else max(r.code for r in results),
        sum(r.seconds for r in results), "\n".join(r.stderr for r in results if r.stderr),
        sum(r.files for r in results), sum(r.sent for r in results), len(results))


def _communicate(proc: subprocess.Popen, stdin: bytes, stop: Optional[threading.Event],
                 watchdog: Optional[Watchdog]) -> tuple[bytes, bytes, bool]:
    """(stdout, stderr, whether the watchdog found it stuck) of a process run to its end."""
    if stop is None and watchdog is None:
        return (*proc.communicate(stdin), False)
    data: Optional[bytes] = stdin
    while True:
        try:
            return (*proc.communicate(data, timeout=STOP_POLL_SECONDS), False)
        except subprocess.TimeoutExpired:
            data = None  # given once; communicate() goes on writing what is left of it
            stopped = stop is not None and stop.is_set()
            if stopped:
                return (*_end(proc), False)
            if watchdog is not None and watchdog.stuck(proc.pid):
                # SIGTERM would wait: rsync's exit flushes a socket that is not moving. The
                # sender keeps no temporary file to clean up; the receiver's goes with its
                # connection.
                proc.kill()
                return (*proc.communicate(), True)


def _end(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """SIGTERM (rsync removes its temporary files), then SIGKILL if it is still there after
    TERM_GRACE_SECONDS: on a stalled connection rsync's exit waits to flush its socket."""
    proc.terminate()
    try:
        return proc.communicate(timeout=TERM_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()
