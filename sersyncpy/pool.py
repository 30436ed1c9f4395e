"""The thread group: one lane per (watch root, remote), each pushing collapsed batches with rsync.

Group commit: an idle lane takes the first change at once; while it pushes, changes pile up
in its filter queue and collapse, and its next rsync carries all of them. A lane owns its
remote's backlog, so a slow or dead remote never holds up another. sersync instead ran one
rsync per event per remote from N unordered workers.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
import socket
import stat
import threading
import time
from collections import deque
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Callable, Optional

from sersyncpy import rsync, rsync_failures
from sersyncpy.config import DEFAULT_MAX_PENDING
from sersyncpy.diskstate import State, Unreadable, disk_state, is_empty
from sersyncpy.events import COVERING, DELETE, FULL, RENAME, SUBTREE, UPDATE, Event, is_clean
from sersyncpy.filterqueue import FilterQueue
from sersyncpy.resync import Resync
from sersyncpy.rules import Excluded, exclude_file, excluded_below

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
# Deletions wait until none new has come for this long, so that a watch root being deleted
# (rm -rf /var/www: its content goes first, the root last, however long that takes) never
# reaches the remotes as a mass deletion. Nothing else waits. SERSYNCPY_DELETE_HOLD_SECONDS
# sets it; a stream of deletions that never pauses waits at most DELETE_HOLD_MAX_SECONDS.
DELETE_HOLD_SECONDS = 0.5
DELETE_HOLD_MAX_SECONDS = 30.0


@dataclass
class Plan:
    """What one batch becomes: the rsync calls to make, in this order."""

    renames: list[Event] = field(default_factory=list)  # one --link-dest call each
    full: list[Event] = field(default_factory=list)  # one quick-check recursive call
    listed: list[Event] = field(default_factory=list)  # one call for all of them
    dirs: list[Event] = field(default_factory=list)  # one non-recursive call for all of them
    root_gone: bool = False  # the watcher saw the root itself go: push nothing
    missing: list[Event] = field(default_factory=list)  # in `listed`: deletions on the remote
    skipped: list[Event] = field(default_factory=list)  # left to their parent's deletion
    unreadable: list[Event] = field(default_factory=list)  # we may not read them: not sent
    recursed: list[str] = field(default_factory=list)  # directories rsync sends whole
    unclean: list[Event] = field(default_factory=list)  # not a clean path below the root


def plan(batch: list[Event], state: Callable[[str], State],
         renamable: Callable[[str, str], bool]) -> Plan:
    """Sort a batch into rsync calls by kind and by what each path is on disk now.

    The disk decides because the batch may be older than the tree: a renamed directory that
    has gone again is just a deletion, a directory whose metadata changed must not be
    recursed into, and whatever a listed path is now is what rsync will send. A shadowed
    path is left out: rsync would fail on it or, below a symlink, follow it out of the tree;
    the ancestor that became a file or a symlink carries its deletion. An unreadable one is
    left out too: rsync could not read it either, and retrying would not help.
    """
    p = Plan()
    for event in batch:
        if event.path == "" and event.kind == DELETE:
            p.root_gone = True
            continue
        if not is_clean(event.path) or (event.src is not None and not is_clean(event.src)):
            p.unclean.append(event)  # never produced here; a bug, not input to trust
            continue
        now = state(event.path)
        if now is State.SHADOWED:
            continue
        if now is State.UNREADABLE:
            p.unreadable.append(event)
            continue
        if (now is State.MISSING and "/" in event.path
                and state(event.path.rsplit("/", 1)[0]) is State.MISSING):
            # Its parent went too: the parent's own event deletes (or renames) it whole.
            p.skipped.append(event)
            continue
        if now is State.DIR and event.kind in COVERING:
            p.recursed.append(event.path)
        if (event.kind == RENAME and now is State.DIR
                and renamable(event.src or "", event.path)):
            p.renames.append(event)
        elif event.kind == FULL and now is State.DIR:
            p.full.append(event)
        elif event.kind == UPDATE and now is State.DIR:
            p.dirs.append(event)
        else:
            p.listed.append(event)
            if now is State.MISSING:
                p.missing.append(event)
    return p


def next_backoff(previous: float, code: int = 10) -> float:
    """1 s doubling to 60 s, with jitter so that lanes do not retry in step. A partial
    transfer (23) is mostly files changing under rsync, and their own events follow: retry
    soon, from 0.1 s up to 5 s."""
    first, cap = (0.1, 5.0) if code == 23 else (BACKOFF_FIRST, BACKOFF_MAX)
    base = first if previous <= 0 else min(previous * 2, cap)
    return base * random.uniform(0.8, 1.2)


class Slots:
    """At most `n` rsync processes at once over all lanes (-n), granted first come, first
    served: with threading.Semaphore a lane that just released a slot takes it straight back,
    and with 16 remotes on 10 slots some waited seconds for their first push."""

    def __init__(self, n: int):
        self._free = max(1, n)
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()

    def __enter__(self) -> Slots:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return self
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # the releasing lane hands its slot over
        return self

    def __exit__(self, *_exc) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._free += 1


@dataclass
class LaneStats:
    batches: int = 0
    paths: int = 0
    rsync_runs: int = 0
    failures: int = 0  # consecutive failed batches
    failed_batches: int = 0  # since start
    files_sent: int = 0
    bytes_sent: int = 0
    events_in: int = 0  # offered to the lane, before collapsing
    events_out: int = 0  # taken in batches, after collapsing
    last_success: Optional[float] = None  # time.time()
    last_full_sync: Optional[float] = None  # time.time() of the last full push that worked
    last_error: str = ""
    last_code: int = 0
    collapses: int = 0  # times the pending paths became one full sync (max_pending)


class Lane(threading.Thread):
    """Pushes the changes of one watch root to one remote, one batch at a time, in order."""

    def __init__(self, root: str, target: rsync.Target, slots: Slots,
                 delete_hold: float = DELETE_HOLD_SECONDS,
                 on_pushed: Optional[Callable[[Lane, list[Event], int], None]] = None,
                 max_pending: int = DEFAULT_MAX_PENDING, unreadable: Optional[Unreadable] = None,
                 excluded: Optional[Excluded] = None):
        super().__init__(name=f"lane {target.label}", daemon=True)
        self.root = root
        self.target = target
        self.stats = LaneStats()
        # Past this many pending paths (a remote down for long under churn), they become
        # one full sync of the root: memory stays bounded whatever the outage.
        self.max_pending = max_pending
        self.unreadable = unreadable or Unreadable(root)
        self.excluded = excluded  # the <filter> regexes (Rules.is_excluded), when on
        self._push_failing = False  # the last push raised: its traceback is logged once
        self.version = 0  # changes whenever what is pending changes (for the fail log)
        self._root_dev = os.stat(root).st_dev
        self._slots = slots  # -n: how many rsync processes may run at once, over all lanes
        self._queue = FilterQueue()
        self._inflight: list[Event] = []
        self._cond = threading.Condition()
        self._paused = False  # the root is gone: wait for new events, do not retry
        self._retry_now = False
        self.delete_hold = delete_hold
        self._held: set[str] = set()  # deletions held back, to notice new ones
        self._hold_since = 0.0  # when the first of them was held
        self._hold_until = 0.0  # when they go, unless another deletion comes first
        self._stopping = False
        self._deadline = 0.0
        # Plugins in sync mode: told what each batch pushed, and the sequence number of the
        # last offer the batch could include (see plugins/gate.py).
        self._on_pushed = on_pushed
        self._seq = 0
        self._offers = 0  # offers so far: did any come while a batch was being pushed?
        # time.monotonic() of the oldest change not yet on the remote (None: caught up), for
        # the replication lag in the status file.
        self._oldest: Optional[float] = None
        self._inflight_oldest: Optional[float] = None  # the same, for the batch being pushed
        self._abandoned = False  # a reload removed the remote: its changes are dropped
        self._resync: Optional[Resync] = None  # the start-up resync while it runs
        self._resyncs: list[Resync] = []  # every one started, joined when the lane ends

    # -- called from other threads ------------------------------------------------------

    def offer(self, events: list[Event], seq: int = 0) -> None:
        with self._cond:
            if self._abandoned:
                return
            self._queue.push_many(events)
            if len(self._queue) > self.max_pending:
                self._collapse()
            if self._resync is not None:
                self._resync.record(events)
            self._seq = max(self._seq, seq)
            self._offers += 1
            self.stats.events_in += len(events)
            if self._oldest is None:
                self._oldest = time.monotonic()
            self.version += 1
            self._paused = False
            self._cond.notify()

    def _collapse(self) -> None:
        """Too many pending paths: one full sync of the root replaces them (under _cond)."""
        count = len(self._queue)
        self._queue.take()
        self._queue.push(FULL, "", True)
        self.stats.collapses += 1
        deletions = ("deletions included" if self.target.full_deletes else
                     "without deletions, as <delete inFullSync=\"false\"> asks")
        logger.warning("%s: %d paths pending (more than %d): they are replaced by one full "
                       "sync of %s (rsync's quick check, %s)", self.target.label, count,
                       self.max_pending, self.root, deletions)

    def filter_with(self, excluded: Optional[Excluded]) -> None:
        """A reload changed the <filter> regexes: the next push applies the new ones."""
        with self._cond:
            self.excluded = excluded

    def snapshot(self) -> tuple[int, list[Event]]:
        """(version, everything not yet on the remote): the batch in flight, then the queue."""
        with self._cond:
            return self.version, self._inflight + self._queue.peek()

    @property
    def paused(self) -> bool:
        return self._paused

    def lag(self) -> tuple[int, float]:
        """(changes pending, seconds the oldest of them has waited; 0 when caught up)."""
        with self._cond:
            pending = len(self._inflight) + len(self._queue)
            oldest = min((t for t in (self._oldest, self._inflight_oldest) if t is not None),
                         default=None)
            if oldest is None:
                return pending, 0.0
            return pending, time.monotonic() - oldest

    def retry_now(self) -> None:
        """Cut a backoff short (sersync's timeToExecute)."""
        with self._cond:
            self._retry_now = True
            self._cond.notify()

    def resync_beside(self) -> None:
        """A full sync of the root beside the live pushes (resync.py), unless one runs."""
        with self._cond:
            if self._resync is not None or self._stopping:
                return
            self._resync = Resync(self)
            self._resyncs.append(self._resync)
        self._resync.start()

    def resynced(self, redo: list[Event], synced: bool) -> None:
        """From the Resync, once it ended (`synced`: the remote has the root; else there was
        nothing to push): push again what changed meanwhile."""
        with self._cond:
            self._resync = None
            if synced:
                self.stats.last_full_sync = time.time()
        if redo:
            self.offer(redo)

    def counted_run(self, argv: list[str], stdin: bytes,
                    stop: threading.Event) -> rsync.Result:
        """One rsync beside the lane's own (the Resync's), counted in the lane's stats."""
        result = rsync.run(argv, self.root, stdin, stop)
        with self._cond:
            self.stats.rsync_runs += 1
            if result.ok:
                self.stats.files_sent += result.files
                self.stats.bytes_sent += result.sent
        return result

    def abandon(self) -> None:
        """Stop at once and drop what is pending: the remote is no longer configured."""
        with self._cond:
            self._abandoned = True
            self._queue.take()
            self._stopping = True
            self._deadline = time.monotonic()
            self._cond.notify()

    def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop once what is queued is pushed; a remote still failing after `drain_seconds`
        keeps its paths pending (the fail log takes them to the next start)."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + drain_seconds
            self._cond.notify()

    # -- the lane's own thread -----------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except Exception:
            logger.exception("%s: the lane failed", self.target.label)
            raise
        finally:
            for resync in self._resyncs:  # the next start resyncs again
                resync.stop()
                resync.join()

    def _loop(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while (not self._queue or self._paused) and not self._stopping:
                    self._cond.wait()
                if not self._queue or self._paused:
                    return
            # The batch is taken once the slot is ours, so it carries all that came while
            # this lane waited for one: fewer, larger rsync calls when slots are short.
            with self._slots:
                with self._cond:
                    batch = self._inflight = self._queue.take()
                    seq = self._seq
                    offers_at_take = self._offers
                    # What arrives from now on is younger than this batch.
                    batch_oldest, self._oldest = self._oldest, None
                    self._inflight_oldest = batch_oldest
                    self.stats.events_out += len(batch)
                failed, held, skipped = self._push_safely(batch)
            if self._on_pushed is not None:
                # A skipped path is not on the remote's side yet: its parent's deletion,
                # still to come, removes it (and tells the plugins).
                unfinished = {id(e) for e in failed + held + skipped}
                pushed = [e for e in batch if id(e) not in unfinished]
                if pushed:
                    self._on_pushed(self, pushed, seq)
            with self._cond:
                self._inflight = []
                self._inflight_oldest = None
                self.version += 1
                if self._abandoned:
                    return
                if (failed or held) and batch_oldest is not None:
                    self._oldest = min(batch_oldest, self._oldest or batch_oldest)
                if held:
                    self._queue.requeue(held)
                if not failed:
                    backoff = 0.0
                    if held and not self._stopping and self._offers == offers_at_take:
                        # New changes still go at once: an offer ends this wait. One that
                        # came while this batch was planned is seen now, not a hold later.
                        self._cond.wait(max(0.0, self._hold_until - time.monotonic()))
                    continue
                self._queue.requeue(failed)
                if self._paused:
                    continue
                if self._abandoned:
                    return
                if self._stopping and time.monotonic() >= self._deadline:
                    logger.error("%s: stopping with %d paths not pushed (%s); the fail log "
                                 "keeps them for the next start", self.target.label,
                                 len(self._queue), self.stats.last_error)
                    return
                backoff = next_backoff(backoff, self.stats.last_code)
                wait = backoff
                if self._stopping:
                    wait = min(wait, max(0.0, self._deadline - time.monotonic()))
                logger.warning("%s: retrying %d paths in %.1fs", self.target.label,
                               len(self._queue), wait)
            self._wait_before_retry(wait)

    def _wait_before_retry(self, seconds: float) -> None:
        """Back off, but retry at once when a remote that could not be reached answers
        again: after an outage it converges within a second or two, not at the backoff.
        A stop cuts the wait to the drain deadline, never shorter: a dead remote is not
        retried in a busy loop while the others drain."""
        deadline = time.monotonic() + seconds
        code = self.stats.last_code
        # ssh says 255 for a refused connection and for a refused key alike: probe only when
        # the port does not answer now, else a wrong key would be retried every second.
        probe = code in UNREACHABLE_CODES or (
            code == 255 and self.target.ssh and not reachable(self.target))
        while True:
            with self._cond:
                end = min(deadline, self._deadline) if self._stopping else deadline
                left = end - time.monotonic()
                if left <= 0 or self._retry_now or self._abandoned:
                    self._retry_now = False
                    return
                self._cond.wait(min(left, PROBE_SECONDS) if probe else left)
            if probe and reachable(self.target):
                return

    def root_present(self) -> bool:
        """The root is where it was: not deleted, moved away, or covered by another mount."""
        try:
            st = os.stat(self.root)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and st.st_dev == self._root_dev

    def _pause(self, why: str) -> None:
        with self._cond:
            first = not self._paused
            self._paused = True
        if first:
            logger.error("%s: %s: replication paused, nothing is deleted on the remote "
                         "until the root is back", self.target.label, why)

    def _hold_deletions(self, p: Plan) -> list[Event]:
        """Take the deletions out of `p` until none new has come for `delete_hold` seconds
        (at most DELETE_HOLD_MAX_SECONDS after the first)."""
        # The deletion of an rsync temporary name (the source of its rename into place, in a
        # tree that is itself an rsync destination) goes with the rename's update, at once:
        # no watch root is deleted by it, and a second rsync per received file would follow.
        missing = [e for e in p.missing if not rsync.is_temp_name(e.path.rpartition("/")[2])]
        paths = {e.path for e in missing}
        if not paths or self.delete_hold <= 0 or self._stopping:
            self._held = set()
            return []
        now = time.monotonic()
        if not self._held:
            self._hold_since = now
        if not paths <= self._held:
            self._hold_until = min(now + self.delete_hold,
                                   self._hold_since + DELETE_HOLD_MAX_SECONDS)
        if now >= self._hold_until:
            self._held = set()
            return []
        self._held = paths
        held = {id(e) for e in missing}
        p.listed = [e for e in p.listed if id(e) not in held]
        return missing

    def _push_safely(self, batch: list[Event]) -> tuple[list[Event], list[Event], list[Event]]:
        """_push, but whatever goes wrong in it (a bug, an error nobody foresaw) leaves the
        batch pending, backs off and is retried: one bad push never ends the lane."""
        try:
            result = self._push(batch)
        except Exception as exc:
            self.stats.failures += 1
            self.stats.failed_batches += 1
            self.stats.last_code = 0  # no rsync failed: back off at the usual pace
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if not self._push_failing:
                logger.exception("%s: a push of %d paths failed unexpectedly; they stay "
                                 "pending and are retried", self.target.label, len(batch))
            self._push_failing = True
            return batch, [], []
        self._push_failing = False
        return result

    def _push(self, batch: list[Event]) -> tuple[list[Event], list[Event], list[Event]]:
        """Push one batch; return the events that did not reach the remote, the deletions
        held back for now, and those left to their parent's deletion."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: batch: %s", self.target.label, ", ".join(map(str, batch)))
        seen: dict[str, State] = {}  # the directories of this batch, each checked once
        p = plan(batch, lambda rel: disk_state(self.root, rel, seen),
                 lambda src, dst: rsync.renamable(self.target, src, dst))
        if p.root_gone or not self.root_present():
            self._pause(f"the watch root {self.root} is gone or was replaced")
            return batch, [], []
        if p.unclean:
            logger.error("%s: refusing %d paths that are not clean paths below the root: %s",
                         self.target.label, len(p.unclean), ", ".join(map(str, p.unclean[:5])))
        if p.unreadable:
            self.unreadable.report(e.path for e in p.unreadable)
        held = self._hold_deletions(p)
        with self.exclusions(p.recursed) as exclude_from:
            failed = self._send(p, exclude_from)
        if failed:
            self.stats.failures += 1
            self.stats.failed_batches += 1
        else:
            self.stats.failures = 0
            self.stats.last_success = time.time()
            self.unreadable.readable(e.path for e in p.listed + p.full + p.dirs + p.renames)
        self.stats.batches += 1
        return failed, held, p.skipped + p.unreadable + p.unclean

    def exclusions(self, tops: list[str]) -> AbstractContextManager[Optional[str]]:
        """The --exclude-from file for pushes that send `tops` whole: what the <filter>
        regexes leave out below them (None: nothing, or no <filter>)."""
        found = excluded_below(self.root, tops, self.excluded) if self.excluded and tops else []
        return exclude_file(found)

    def _send(self, p: Plan, exclude_from: Optional[str]) -> list[Event]:
        """The rsync calls of a planned batch, in order (renames, full syncs, listed paths,
        directories' own metadata); returns the events that did not reach the remote."""
        failed: list[Event] = []
        for event in p.renames:
            argv = rsync.rename_argv(self.target, event.src, event.path, exclude_from)
            if not self._run(argv, [event], "rename").ok:
                # Perhaps an rsync older than 3.2.3 (no --mkpath): send the directory whole.
                p.listed.append(Event(SUBTREE, event.path, True))
        full = []
        for event in p.full:
            if self.target.deletes and is_empty(os.path.join(self.root, event.path)):
                # An empty root is more often a failed mount than a wish to delete it all.
                logger.warning("%s: skipping the full push of %s: it is empty (a failed "
                               "mount?), and a full push would delete everything below it "
                               "on the remote", self.target.label,
                               os.path.join(self.root, event.path))
                continue
            full.append(event)
        if full:
            stdin = rsync.encode_list(e.path for e in full)
            argv = rsync.full_argv(self.target, exclude_from)
            if not self._run(argv, full, "full", stdin).ok:
                failed += full
            elif any(e.path == "" for e in full):
                self.stats.last_full_sync = time.time()
        if p.listed:
            stdin = rsync.encode_list(e.path for e in p.listed)
            argv = rsync.listed_argv(self.target, exclude_from)
            result = self._run(argv, p.listed, "batch", stdin)
            if not result.ok:
                failed += self._which_failed(result, p.listed)
        if p.dirs:
            stdin = rsync.encode_list(e.path for e in p.dirs)
            if not self._run(rsync.dirs_argv(self.target), p.dirs, "dirs", stdin).ok:
                failed += p.dirs
        return failed

    def _which_failed(self, result: rsync.Result, events: list[Event]) -> list[Event]:
        """After a partial transfer (23), only the paths rsync names failed; otherwise, or
        when it cannot be told, the whole call."""
        if result.code != 23:
            return events
        directories = ([e.path for e in events if disk_state(self.root, e.path) is State.DIR]
                       if self.target.deletes else ())
        names = rsync_failures.failed_paths(result.stderr, [e.path for e in events], self.root,
                                            directories=directories)
        if names is None:
            return events
        failed = [e for e in events if e.path in names]
        logger.info("%s: %d of %d paths to retry after the partial transfer",
                    self.target.label, len(failed), len(events))
        return failed

    def _run(self, argv: list[str], events: list[Event], what: str,
             stdin: bytes = b"") -> rsync.Result:
        result = rsync.run(argv, self.root, stdin)
        self.stats.rsync_runs += 1
        if result.ok:
            self.stats.paths += len(events)
            self.stats.files_sent += result.files
            self.stats.bytes_sent += result.sent
            logger.info("%s: %s of %d paths, exit %d, %.3fs", self.target.label, what,
                        len(events), result.code, result.seconds)
            return result
        self.stats.last_code = result.code
        self.stats.last_error = f"exit {result.code} ({rsync.describe_exit(result.code)})"
        fatal = rsync.classify(result.code) is rsync.Outcome.FATAL
        level = logging.ERROR if fatal else logging.WARNING
        lines = result.stderr.splitlines()
        logger.log(level, "%s: %s of %d paths failed: %s%s", self.target.label, what,
                   len(events), self.stats.last_error,
                   "".join(f"\n    {line}" for line in lines[:10]))
        return result


# rsync exit codes that mean the remote could not be reached or stopped answering.
UNREACHABLE_CODES = frozenset({10, 12, 30, 35})
PROBE_SECONDS = 1.0


def ssh_port(rsh: str) -> int:
    """The port the remote shell connects to: `-p N`, `-pN` or `-o Port=N`, else 22."""
    try:
        words = shlex.split(rsh)
    except ValueError:
        return 22
    port = 22
    for i, word in enumerate(words):
        value = None
        if word == "-p" and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("-p") and len(word) > 2:
            value = word[2:]
        elif word == "-o" and i + 1 < len(words) and words[i + 1].lower().startswith("port="):
            value = words[i + 1].split("=", 1)[1]
        elif word.lower().startswith("-oport="):
            value = word.split("=", 1)[1]
        if value is not None and value.strip().isdigit():
            port = int(value)
    return port


def reachable(target: rsync.Target) -> bool:
    """Whether the remote's daemon (or sshd) accepts a TCP connection within a second."""
    port = ssh_port(target.rsh) if target.ssh else (target.port or 873)
    try:
        socket.create_connection((target.ip, port), timeout=PROBE_SECONDS).close()
    except OSError:
        return False
    return True
