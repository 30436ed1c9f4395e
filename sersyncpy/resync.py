"""The start-up resync: one full sync of a lane's root (rsync's quick check) that runs beside
the lane's live pushes, so that what changed while sersyncpy was not watching reaches the
remote without holding up what changes now. sersync needed -r for that, and lost it anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Optional, Protocol

from sersyncpy import rsync, rsyncrun
from sersyncpy.backoff import Backoff
from sersyncpy.diskstate import is_empty
from sersyncpy.events import FULL, Event
from sersyncpy.filterqueue import FilterQueue
from sersyncpy.worker import Worker

logger = logging.getLogger(__name__)

RETRY_FIRST = 1.0
RETRY_MAX = 60.0


class ResyncedLane(Protocol):
    """What a Resync needs of its lane (lane.Lane)."""

    root: str
    target: rsync.Target
    max_pending: int

    def root_present(self) -> bool: ...

    def exclusions(self, tops: list[str]) -> AbstractContextManager[Optional[str]]: ...

    def counted_run(self, argv: list[str], paths: list[str],
                    stop: threading.Event) -> rsyncrun.Result: ...

    def resynced(self, redo: list[Event], synced: bool) -> None: ...


class Resync(Worker):
    """One full sync of the root beside the live pushes, retried until it works or the lane
    stops. What the lane is offered meanwhile is recorded, collapsed, and given back to the
    lane once it is done: the resync may have read a file before it changed, or listed a
    directory since deleted, so those paths are pushed again, in order, by the lane."""

    def __init__(self, lane: ResyncedLane):
        super().__init__(f"resync {lane.target.label}")
        self.lane = lane
        self._changed = FilterQueue()  # offered to the lane while this runs
        self._lock = threading.Lock()

    def record(self, events: Iterable[Event]) -> None:
        with self._lock:
            self._changed.push_many(events)
            if len(self._changed) > self.lane.max_pending:
                self._changed.take()  # as the lane does: the root again, whole
                self._changed.push(FULL, "", True)

    def work(self) -> None:
        """Until it is done, or the lane stops (stop() ends the rsync under way: the next
        start resyncs again)."""
        backoff = Backoff(RETRY_FIRST, RETRY_MAX)
        while not self.stopping():
            outcome = self._once()
            if outcome is not None:
                with self._lock:
                    redo = self._changed.take()
                self.lane.resynced(redo, synced=outcome)
                return
            self.rest(backoff.next())

    def _once(self) -> Optional[bool]:
        """One attempt: True when the remote has the root, False when there is nothing to
        do (an empty root is not pushed), None to try again."""
        lane = self.lane
        if not lane.root_present():
            return None  # gone or replaced (a failed mount): never a mass deletion; retry
        if lane.target.full_deletes and is_empty(lane.root):
            # A new, empty tree is common; a file system not mounted looks the same, and a
            # full sync of it would delete everything on the remote.
            logger.info("%s: no start-up resync of %s: it is empty", lane.target.label,
                        lane.root)
            return False
        started = time.monotonic()
        with lane.exclusions([""]) as exclude_from:
            result = lane.counted_run(rsync.full_argv(lane.target, exclude_from), [""],
                                      self._stop_asked)
        if self.stopping():
            return None
        if result.ok:
            logger.info("%s: start-up resync of %s done in %.1fs (%d files sent)",
                        lane.target.label, lane.root, time.monotonic() - started, result.files)
            return True
        logger.warning("%s: start-up resync of %s failed: exit %d (%s); tried again",
                       lane.target.label, lane.root, result.code,
                       rsync.describe_exit(result.code))
        return None
