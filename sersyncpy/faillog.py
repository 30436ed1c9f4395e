"""The fail log: every remote's pending paths, kept on disk at <failLog path> and replayed at
start-up, so that a dead remote, a crash or a kill loses nothing.

The file is a /bin/sh script for people, as sersync's was: running it pushes the pending
paths with rsync, every name single-quoted. sersyncpy never runs it; it reads only the data
lines (`#P ...`, each path base64-encoded), so no file name is ever interpreted.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Optional, Union

from sersyncpy import rsync, statefiles
from sersyncpy.background import PidFile
from sersyncpy.events import DELETE, KIND_NAMES, RENAME, Event, is_clean
from sersyncpy.worker import Worker

logger = logging.getLogger(__name__)

MAGIC = b"# sersyncpy fail log v1"
# A fail log longer than this is not read (a sparse or planted file must not fill memory):
# some 2 million pending paths, beyond the pending cap of every remote together.
MAX_BYTES = 512 * 1024 * 1024
BAD_LINES_NAMED = 10  # damaged lines named one by one in the log; the rest are counted
# How often at most the file is rewritten while lanes change. After a kill, what the last
# second added is recovered by the resync of every root at the next start.
WRITE_SECONDS = 1.0
class RunState(str, enum.Enum):
    """What the fail log says of the run that wrote it, on its #S line."""

    RUNNING = "running"  # still running, or killed: the next start treats it as a crash
    CLEAN = "clean"  # stopped cleanly: what is pending is all there is


RUNNING, CLEAN = RunState.RUNNING, RunState.CLEAN


@dataclass(frozen=True)
class LaneState:
    """What one lane has not yet pushed: its key (root and remote), target and events."""

    root: str
    target: rsync.Target
    events: tuple[Event, ...]

    @property
    def key(self) -> str:
        return lane_key(self.root, self.target)


def lane_key(root: str, target: rsync.Target) -> str:
    return f"{root}\0{target.label}"


def _b64(text: str) -> bytes:
    return base64.b64encode(os.fsencode(text))


def _unb64(data: bytes) -> str:
    return os.fsdecode(base64.b64decode(data, validate=True))


def sh_quote(text: str) -> bytes:
    """POSIX single quotes around any bytes: inside them the shell interprets nothing."""
    return b"'" + os.fsencode(text).replace(b"'", b"'\\''") + b"'"


def _script(state: LaneState) -> Iterator[bytes]:
    """The commands that push one lane's paths by hand, line by line."""
    paths: list[str] = []
    for e in state.events:
        if e.kind == RENAME and e.src is not None:
            paths.append(e.src)
        paths.append(e.path)
    argv = rsync.listed_argv(state.target)
    yield b"# " + os.fsencode(state.target.label) + b": %d paths" % len(paths)
    yield b"cd " + sh_quote(state.root) + b" && {"
    for i in range(0, len(paths), 100):
        # ./ as in rsync.encode_list: a listed name starting with # would be a comment.
        chunk = b" ".join(sh_quote(f"./{p}" if p else ".") for p in paths[i:i + 100])
        yield b"printf '%s\\0' " + chunk
        # printf is a shell builtin, so no exec argument limit applies to long lists.
    yield b"} | " + b" ".join(sh_quote(a) for a in argv)


def render(state: RunState, lanes: Sequence[LaneState]) -> bytes:
    """The whole file: header, data lines, then the script. Pure."""
    return b"".join(render_lines(state, lanes))


def render_lines(state: RunState, lanes: Sequence[LaneState]) -> Iterator[bytes]:
    """The file line by line, each ending in a newline: written as it is made, a fail log
    of 100,000 paths per lane never sits whole in memory (~500 B a path did)."""
    for line in _lines(state, lanes):
        yield line + b"\n"


def _lines(state: RunState, lanes: Sequence[LaneState]) -> Iterator[bytes]:
    yield from (b"#!/bin/sh", MAGIC,
                b"# Paths not yet on their remotes. sersyncpy rewrites this file and replays "
                b"it",
                b"# at start-up; running it with /bin/sh pushes them with rsync.",
                b"#S " + state.value.encode())
    ids = {}
    for lane in lanes:
        if not lane.events:
            continue
        ids[lane.key] = str(len(ids)).encode()
        yield b"#L " + ids[lane.key] + b" " + _b64(lane.root) + b" " + _b64(lane.target.label)
        for e in lane.events:
            line = b"#P %s %d %d %s" % (ids[lane.key], e.kind, e.is_dir, _b64(e.path))
            yield line + (b" " + _b64(e.src) if e.src is not None else b"")
    for lane in lanes:
        if lane.events:
            yield from _script(lane)


class BadLine(ValueError):
    """A data line that cannot be replayed; its message says why."""


def _event(fields: list[bytes]) -> Event:
    """The Event of a `#P ID KIND ISDIR PATH [SRC]` line, checked as input from another user:
    a known kind, a clean relative path (events.is_clean), a source for a RENAME only."""
    if len(fields) not in (5, 6) or fields[3] not in (b"0", b"1"):
        raise BadLine("not a #P ID KIND ISDIR PATH [SRC] line")
    if not fields[2].isdigit() or int(fields[2]) not in KIND_NAMES:
        raise BadLine(f"unknown kind {fields[2][:20]!r}")
    kind = int(fields[2])
    path = _unb64(fields[4])
    src = _unb64(fields[5]) if len(fields) == 6 else None
    if (src is None) != (kind != RENAME):
        raise BadLine("a source path is for a RENAME, and a RENAME needs one")
    for name in (path, src):
        if name is not None and not is_clean(name):
            raise BadLine(f"{name[:200]!r} is not a clean path below the root")
    return Event(kind, path, fields[3] == b"1", src)


def parse(data: bytes) -> tuple[Optional[RunState], dict[str, list[Event]]]:
    """(state, {lane key: events}) from a file's bytes; state None if it is not ours. A line
    that cannot be replayed is skipped with a WARNING (the first few are named)."""
    lines = data.split(b"\n")
    if len(lines) < 2 or lines[1] != MAGIC:
        return None, {}
    state = RUNNING
    keys: dict[bytes, str] = {}
    pending: dict[str, list[Event]] = {}
    bad = 0
    for number, line in enumerate(lines, 1):
        fields = line.split(b" ")
        try:
            if fields[0] == b"#S":
                # Anything but a clean stop is taken for a crash: the roots are resynced.
                state = CLEAN if fields[1:] == [CLEAN.value.encode()] else RUNNING
            elif fields[0] == b"#L":
                if len(fields) != 4:
                    raise BadLine("not a #L ID ROOT REMOTE line")
                keys[fields[1]] = f"{_unb64(fields[2])}\0{_unb64(fields[3])}"
            elif fields[0] == b"#P":
                if len(fields) < 2 or fields[1] not in keys:
                    raise BadLine("its lane has no #L line before it")
                pending.setdefault(keys[fields[1]], []).append(_event(fields))
        except (BadLine, ValueError) as exc:  # binascii.Error is a ValueError
            bad += 1
            if bad <= BAD_LINES_NAMED:
                logger.warning("fail log: skipping line %d: %s", number, exc)
    if bad > BAD_LINES_NAMED:
        logger.warning("fail log: skipped %d damaged lines in all", bad)
    return state, pending


def write_atomically(path: str, data: Union[bytes, Iterable[bytes]], mode: int = 0o700) -> None:
    """Replace `path` so that a reader, or a crash, sees the old file or the new, whole. The
    temporary file's name is unpredictable (mkstemp): no symlink can be planted for it."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                f.writelines(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path: str) -> tuple[Optional[RunState], dict[str, list[Event]]]:
    """Read the fail log left by the previous run: (state or None, pending per lane key).

    The file is input from whoever could write there: it is used only if it is a regular
    file of ours that nobody else may write, under MAX_BYTES. Otherwise it is moved aside
    and the state is RUNNING with nothing pending, so that every root is resynced. A sersync
    2.5 fail log (shell commands) is moved aside, never run."""
    try:
        data = statefiles.read_trusted(path, MAX_BYTES)
    except statefiles.Untrusted as exc:
        aside, why_not = statefiles.move_aside(path)
        where = f"moved to {aside}" if aside else f"left in place, it cannot be moved: {why_not}"
        logger.error("fail log %s is not used: %s (%s); every root is resynced instead",
                     path, exc, where)
        return RUNNING, {}
    if data is None:
        return None, {}
    state, pending = parse(data)
    if state is None and data.strip():
        aside = path + ".sersync"
        os.replace(path, aside)
        logger.warning("fail log %s was not written by sersyncpy (sersync 2.5's?); moved to "
                       "%s without running it; run sersyncpy -r once to push everything",
                       path, aside)
    return state, pending


def shared_warning(path: str) -> Optional[str]:
    """What to say at start when the fail log is in a directory every user may write."""
    shared = statefiles.shared_directory(path)
    if shared is None:
        return None
    return (f"the fail log {path} is in {shared}, where every local user may create or "
            f"replace files: prefer <failLog path=\"{statefiles.default_fail_log()}\">")


def lock_path(path: str) -> str:
    """Where the lock on fail log `path` lives: in our own state directory, which no other
    user can write, so that nobody can hold or plant it (beside a fail log in /tmp they
    could); named after the fail log, with a hash of its whole path to tell two apart."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:12]
    return os.path.join(statefiles.state_dir(), f"{os.path.basename(path)}.{digest}.lock")


def lock(path: str) -> PidFile:
    """Hold the fail log's lock for the whole run, so that no second sersyncpy shares it
    (both would push, and one's clean stop would hide the other's crash)."""
    return PidFile(lock_path(path), what=f"the fail log {path}", kind="the lock file")


@dataclass
class WriteHealth:
    """Whether the last write of one of our files worked: shown in the status and metrics."""

    path: str
    error: str = ""  # why the last write failed; "" when it worked
    failing_since: Optional[float] = None  # time.time() of the first failure in a row
    failures: int = 0  # failed writes since start

    def failed(self, exc: BaseException, what: str) -> None:
        """Count one failure; the first of a run of them is logged, as an ERROR."""
        self.failures += 1
        reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
        if not self.error:
            self.failing_since = time.time()
            logger.error("cannot write %s %s: %s; replication goes on, the write is tried "
                         "again", what, self.path, reason,
                         exc_info=not isinstance(exc, OSError))
        self.error = reason

    def worked(self, what: str) -> None:
        if self.error:
            logger.warning("%s %s is written again", what, self.path)
        self.error, self.failing_since = "", None


class FailLogWriter(Worker):
    """Rewrites the fail log whenever a lane's pending set changed, at most every
    `interval` seconds; the last write on stop marks a clean shutdown. A write that fails
    (a full disk, a directory in the way) is an ERROR and is tried again, never the end."""

    def __init__(self, path: str, lanes: Sequence, interval: float = WRITE_SECONDS,
                 retry_minutes: float = 60):
        super().__init__("fail log")
        self.path = path
        self.lanes = list(lanes)  # objects with .root, .target, .snapshot(), .retry_now()
        self.interval = interval
        self.retry_seconds = retry_minutes * 60  # sersync's timeToExecute
        self.health = WriteHealth(path)
        self._seen: dict[int, int] = {}

    def write(self, state: RunState) -> bool:
        """Write the file now; False (logged, counted in `health`) when that failed."""
        snapshots = [(lane, *lane.snapshot()) for lane in self.lanes]
        lanes = [LaneState(lane.root, lane.target, tuple(events))
                 for lane, _, events in snapshots]
        started = time.monotonic()
        try:
            write_atomically(self.path, render_lines(state, lanes))
        except Exception as exc:  # a full disk or any other failure: never the end of us
            self.health.failed(exc, "the fail log")
            return False
        # Only now: after a failed write, changed() stays true and the next tick retries.
        self._seen = {id(lane): version for lane, version, _ in snapshots}
        self.health.worked("the fail log")
        # A large backlog makes each write slow: never spend more than a tenth of the time.
        self.interval = max(self.interval, 10 * (time.monotonic() - started))
        return True

    def track(self, lanes: Sequence) -> None:
        """A reload added or removed remotes: write theirs from now on."""
        self.lanes = list(lanes)

    def changed(self) -> bool:
        return bool(self.health.error) or any(
            self._seen.get(id(lane)) != lane.version for lane in self.lanes)

    def work(self) -> None:
        next_retry = time.monotonic() + self.retry_seconds
        while not self.rest(self.interval):
            if self.changed():
                self.write(RUNNING)
            if self.retry_seconds > 0 and time.monotonic() >= next_retry:
                # sersync ran its fail log every timeToExecute minutes; lanes retry on
                # their own much sooner, so this only cuts a long backoff short.
                next_retry = time.monotonic() + self.retry_seconds
                for lane in self.lanes:
                    lane.retry_now()

    def stop(self) -> None:
        """Stop writing, and wait for a write under way."""
        super().stop()
        if self.is_alive():
            self.join()

    def close(self) -> None:
        """After the lanes stopped: what is still pending, and the mark of a clean stop."""
        self.write(CLEAN)


def replay(pending: dict[str, list[Event]], lanes: Sequence) -> int:
    """Give each lane what the previous run left for it; returns the number of paths. The
    start-up resync that follows covers what may be missing (after a kill, the last moments
    before it; a root that had gone when the last run stopped: it is back)."""
    count = 0
    for lane in lanes:
        events = [e for e in pending.get(lane_key(lane.root, lane.target), [])
                  if not (e.kind == DELETE and e.path == "")]
        if events:
            lane.offer(events)
            count += len(events)
    return count
