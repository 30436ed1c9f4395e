"""A lane: the thread that pushes the changes of one watch root to one remote, one batch at a
time, in order. Group commit: an idle lane takes the first change at once; while it pushes,
changes pile up in its filter queue and collapse, and the next rsync carries all of them.
A lane owns its remote's backlog, so a slow or dead remote never holds up another; sersync
instead ran one rsync per event per remote from N unordered workers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from contextlib import AbstractContextManager
from typing import Callable, Optional

from sersyncpy import probe, pushpolicy, rsync, rsyncrun
from sersyncpy.backoff import Backoff
from sersyncpy.config import DEFAULT_MAX_PENDING
from sersyncpy.deletionhold import DELETE_HOLD_SECONDS, DeletionHold
from sersyncpy.diskstate import SharedStates, Unreadable, root_present
from sersyncpy.events import FULL, Event
from sersyncpy.filterqueue import FilterQueue
from sersyncpy.push import LaneStats, Pushed, Pusher
from sersyncpy.resync import Resync
from sersyncpy.rules import Excluded
from sersyncpy.worker import Worker

logger = logging.getLogger(__name__)

RETRY = (1.0, 60.0)  # seconds: the first wait after a failed push, and the longest
# A partial transfer (23) is mostly files changing under rsync, whose own events follow.
RETRY_PARTIAL = (0.1, 5.0)

# Told what a batch pushed, with the sequence number of the last offer it could include
# (plugins/gate.py, in sync mode).
OnPushed = Callable[["Lane", list[Event], int], None]


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

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._free += 1


class Lane(Worker):
    """Pushes the changes of one watch root to one remote, one batch at a time, in order."""

    def __init__(self, root: str, target: rsync.Target, slots: Slots,
                 delete_hold: float = DELETE_HOLD_SECONDS, on_pushed: Optional[OnPushed] = None,
                 max_pending: int = DEFAULT_MAX_PENDING, unreadable: Optional[Unreadable] = None,
                 excluded: Optional[Excluded] = None, states: Optional[SharedStates] = None):
        super().__init__(f"lane {target.label}")
        self.root = root
        self.stats = LaneStats()
        self.pusher = Pusher(root, target, self.stats, unreadable or Unreadable(root), excluded,
                             states)
        # Past this many pending paths (a remote down for long under churn), they become
        # one full sync of the root: memory stays bounded whatever the outage.
        self.max_pending = max_pending
        self.version = 0  # changes whenever what is pending changes (for the fail log)
        self._root_dev = os.stat(root).st_dev
        self._slots = slots  # -n: how many rsync processes may run at once, over all lanes
        self._queue = FilterQueue()
        self._inflight: list[Event] = []
        self._cond = threading.Condition()
        self._paused = False  # the root is gone: wait for new events, do not retry
        self._retry_now = False
        self._hold = DeletionHold(delete_hold)
        self._deadline = 0.0  # when stopping: a failing remote is given up then
        self._push_failing = False  # the last push raised: its traceback is logged once
        self._on_pushed = on_pushed
        self._seq = 0
        self._offers = 0  # offers so far: did any come while a batch was being pushed?
        # time.monotonic() of the oldest change not yet on the remote (None: caught up), for
        # the replication lag in the status file.
        self._oldest: Optional[float] = None
        self._inflight_oldest: Optional[float] = None  # the same, for the batch being pushed
        # The oldest change the push policy waits for: deletions held back are not (they go
        # when the hold says, hold.until).
        self._waiting_since: Optional[float] = None
        self._newest = 0.0  # when the last offer came: a stream that stopped goes early
        self._abandoned = False  # a reload removed the remote: its changes are dropped
        self._resync: Optional[Resync] = None  # the start-up resync while it runs
        self._resyncs: list[Resync] = []  # every one started, joined when the lane ends
        self._cadence = pushpolicy.Cadence()  # when the next batch goes (pushpolicy.py)
        self._offers_counted = 0  # offers the cadence has seen

    @property
    def target(self) -> rsync.Target:
        return self.pusher.target

    # -- called from other threads ------------------------------------------------------

    def offer(self, events: list[Event], seq: int = 0) -> None:
        with self._cond:
            if self._abandoned:
                return
            self._queue.push_many(events)
            if len(self._queue) + len(self._inflight) > self.max_pending:
                self._collapse()
            if self._resync is not None:
                self._resync.record(events)
            self._seq = max(self._seq, seq)
            self._offers += 1
            self.stats.events_in += len(events)
            if self._oldest is None:
                self._oldest = time.monotonic()
            self.version += 1
            # Wake the lane only when this offer changes when it pushes: it waited for work
            # (or for held deletions alone), or was paused. While a batch gathers, its time
            # is set: hundreds of offers a second need not each wake the lane.
            self._newest = time.monotonic()
            if self._waiting_since is None or self._paused:
                self._waiting_since = self._waiting_since or time.monotonic()
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

    def retarget(self, target: rsync.Target) -> None:
        """A reload changed the remote's rsync options: the next call uses them."""
        with self._cond:
            self.pusher.target = target

    def filter_with(self, excluded: Optional[Excluded]) -> None:
        """A reload changed the <filter> regexes: the next push applies the new ones."""
        with self._cond:
            self.pusher.excluded = excluded

    def exclusions(self, tops: list[str]) -> AbstractContextManager[Optional[str]]:
        return self.pusher.exclusions(tops)

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
            if self._resync is not None or self.stopping():
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

    def counted_run(self, argv: list[str], paths: list[str],
                    stop: threading.Event) -> rsyncrun.Result:
        """One rsync call beside the lane's own (the Resync's), counted in the lane's
        stats."""
        result = rsyncrun.run_paths(argv, self.root, paths, stop)
        with self._cond:
            self.stats.rsync_runs += result.calls
            if result.ok:
                self.stats.files_sent += result.files
                self.stats.bytes_sent += result.sent
        return result

    def abandon(self) -> None:
        """Stop at once and drop what is pending: the remote is no longer configured."""
        with self._cond:
            self._abandoned = True
            self._queue.take()
            self._deadline = time.monotonic()
        super().stop()

    def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop once what is queued is pushed; a remote still failing after `drain_seconds`
        keeps its paths pending (the fail log takes them to the next start)."""
        with self._cond:
            self._deadline = time.monotonic() + drain_seconds
        super().stop()

    def root_present(self) -> bool:
        """The root is where it was: not deleted, moved away, or covered by another mount."""
        return root_present(self.root, self._root_dev)

    # -- the lane's own thread -----------------------------------------------------------

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def finish(self) -> None:
        for resync in self._resyncs:  # the next start resyncs again
            resync.stop()
            resync.join()

    def work(self) -> None:
        backoff = Backoff(*RETRY, jitter=0.2)
        while True:
            with self._cond:
                while (not self._queue or self._paused) and not self.stopping():
                    self._cond.wait()
                if not self._queue or self._paused:
                    return
                self._gather()
            # The batch is taken once the slot is ours, so it carries all that came while
            # this lane waited for one: fewer, larger rsync calls when slots are short.
            with self._slots:
                batch, seq, batch_oldest, since = self._take()
                runs = self.stats.rsync_runs
                started = time.monotonic()
                pushed = self._push_safely(batch, since)
                ended = time.monotonic()
            # The cost is what rsync took: not a failure's (a timeout), nor a push of only
            # deletions held back, which ran none.
            if not pushed.failed and self.stats.rsync_runs > runs:
                with self._cond:
                    offers, self._offers_counted = (self._offers - self._offers_counted,
                                                    self._offers)
                self._cadence = pushpolicy.pushed(self._cadence, started, ended, since,
                                                  offers, self.target.budget)
            self._tell(batch, pushed, seq)
            wait = self._settle(pushed, backoff, batch_oldest)
            if wait is None:
                return
            if wait > 0:
                self._wait_before_retry(wait)

    def _gather(self) -> None:
        """Let changes gather while the push policy says so (under _cond): at once after a
        quiet spell, else until the window after the last push has passed."""
        while not self.stopping():
            if self._waiting_since is None:  # only deletions held back
                at = self._hold.until
            else:
                at = pushpolicy.push_at(self._cadence, self._waiting_since,
                                        self.target.budget, self._newest)
            left = at - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _take(self) -> tuple[list[Event], int, Optional[float], Optional[float]]:
        """The whole queue as the next batch: (batch, seq, its oldest change, when it began
        to gather)."""
        with self._cond:
            batch = self._inflight = self._queue.take()
            # What arrives from now on is younger than this batch.
            batch_oldest, self._oldest = self._oldest, None
            since, self._waiting_since = self._waiting_since, None
            self._inflight_oldest = batch_oldest
            self.stats.events_out += len(batch)
            return batch, self._seq, batch_oldest, since

    def _tell(self, batch: list[Event], pushed: Pushed, seq: int) -> None:
        """The plugins' gate: what reached the remote. A dropped path is not on the remote's
        side yet: its parent's deletion, still to come, removes it (and tells the plugins)."""
        if self._on_pushed is None:
            return
        unfinished = {id(e) for e in pushed.failed + pushed.held + pushed.dropped}
        done = [e for e in batch if id(e) not in unfinished]
        if done:
            self._on_pushed(self, done, seq)

    def _settle(self, pushed: Pushed, backoff: Backoff,
                batch_oldest: Optional[float]) -> Optional[float]:
        """Put back what is left of a batch; returns how long to back off before the next
        (0: go on at once), or None when the lane ends."""
        with self._cond:
            self._inflight = []
            self._inflight_oldest = None
            self.version += 1
            if self._abandoned:
                return None
            if (pushed.failed or pushed.held) and batch_oldest is not None:
                self._oldest = min(batch_oldest, self._oldest or batch_oldest)
            if pushed.failed and batch_oldest is not None:
                self._waiting_since = min(batch_oldest, self._waiting_since or batch_oldest)
            if pushed.held:
                # They go when the hold says (_gather), with whatever has come by then.
                self._queue.requeue(pushed.held)
            if not pushed.failed:
                backoff.reset()
                return 0.0
            self._queue.requeue(pushed.failed)
            if self._paused:
                return 0.0
            if self.stopping() and time.monotonic() >= self._deadline:
                logger.error("%s: stopping with %d paths not pushed (%s); the fail log keeps "
                             "them for the next start", self.target.label, len(self._queue),
                             self.stats.last_error)
                return None
            if self.stats.last_code == rsyncrun.STALLED and not self.stopping():
                # Restarted across an outage (stall.py), or idle for the whole --timeout:
                # the remote answers now, or it has had its time; a new connection at once.
                logger.warning("%s: retrying %d paths at once: %s", self.target.label,
                               len(self._queue), self.stats.last_error)
                return 0.0
            first, cap = RETRY_PARTIAL if self.stats.last_code == 23 else RETRY
            wait = backoff.next(first, cap)
            if self.stopping():
                wait = min(wait, max(0.0, self._deadline - time.monotonic()))
            logger.warning("%s: retrying %d paths in %.1fs", self.target.label,
                           len(self._queue), wait)
            return wait

    def _push_safely(self, batch: list[Event], since: Optional[float] = None) -> Pushed:
        """Pusher.push, but whatever goes wrong in it (a bug, an error nobody foresaw) leaves
        the batch pending, backs off and is retried: one bad push never ends the lane."""
        try:
            pushed = self.pusher.push(batch, self.root_present,
                                      lambda p: self._hold.take(p, self.stopping(), since))
        except Exception as exc:
            self.stats.failures += 1
            self.stats.failed_batches += 1
            self.stats.last_code = 0  # no rsync failed: back off at the usual pace
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if not self._push_failing:
                logger.exception("%s: a push of %d paths failed unexpectedly; they stay "
                                 "pending and are retried", self.target.label, len(batch))
            self._push_failing = True
            return Pushed(failed=batch)
        self._push_failing = False
        if pushed.root_gone:
            self._pause(f"the watch root {self.root} is gone or was replaced")
        return pushed

    def _pause(self, why: str) -> None:
        with self._cond:
            first = not self._paused
            self._paused = True
        if first:
            logger.error("%s: %s: replication paused, nothing is deleted on the remote "
                         "until the root is back", self.target.label, why)

    def _wait_before_retry(self, seconds: float) -> None:
        """Back off, but retry at once when a remote that could not be reached answers
        again: after an outage it converges within a second or two, not at the backoff.
        A stop cuts the wait to the drain deadline, never shorter: a dead remote is not
        retried in a busy loop while the others drain."""
        deadline = time.monotonic() + seconds
        code = self.stats.last_code
        # ssh says 255 for a refused connection and for a refused key alike: probe only when
        # the port does not answer now, else a wrong key would be retried every second.
        probing = code in probe.UNREACHABLE_CODES or (
            code == 255 and self.target.ssh and not probe.reachable(self.target))
        while True:
            with self._cond:
                end = min(deadline, self._deadline) if self.stopping() else deadline
                left = end - time.monotonic()
                if left <= 0 or self._retry_now or self._abandoned:
                    self._retry_now = False
                    return
                self._cond.wait(min(left, probe.PROBE_SECONDS) if probing else left)
            if probing and probe.reachable(self.target):
                return
