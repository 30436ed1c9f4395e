"""The lane's deletion hold: a deletion settles a moment, a mass deletion waits until none
new comes, so that a watch root deleted content first never reaches the remotes as one.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from sersyncpy import rsync
from sersyncpy.events import Event
from sersyncpy.push import Plan

# A deletion waits DELETE_SETTLE_SECONDS (counted from when its batch began to gather) for
# others to follow, then goes: a file deleted on its own reaches the remotes about as fast as
# a created one. More than DELETE_BURST at once is a mass deletion: those wait until none
# new has come for DELETE_HOLD_SECONDS, so that a watch root being deleted (rm -rf /var/www:
# its content goes first, the root last, however long that takes) never reaches the remotes
# as one; rm deletes thousands of entries in the settle time. SERSYNCPY_DELETE_HOLD_SECONDS
# sets the hold (0: no wait at all); a stream of deletions that never pauses waits at most
# DELETE_HOLD_MAX_SECONDS.
DELETE_SETTLE_SECONDS = 0.01
DELETE_BURST = 100
DELETE_HOLD_SECONDS = 0.5
DELETE_HOLD_MAX_SECONDS = 30.0


class DeletionHold:
    """Keeps each deletion back DELETE_SETTLE_SECONDS after it was first seen, or, once
    more than DELETE_BURST are pending, all of them until none new has come for `seconds`
    (at most DELETE_HOLD_MAX_SECONDS after the first): the lane's policy against a root
    deleted content first."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self.until = 0.0  # when the next held deletion goes, unless more come first
        self._seen: dict[str, float] = {}  # held deletions: when each was first seen
        self._last_new = 0.0  # when a deletion not held before was last seen
        self._mass = False  # more than DELETE_BURST: the long hold

    def take(self, p: Plan, stopping: bool, since: Optional[float] = None) -> list[Event]:
        """Take the deletions out of `p` that must wait; returns them. A deletion not seen
        before counts as seen `since` (when its batch began to gather), else now."""
        # The deletion of an rsync temporary name (the source of its rename into place, in a
        # tree that is itself an rsync destination) goes with the rename's update, at once:
        # no watch root is deleted by it, and a second rsync per received file would follow.
        missing = [e for e in p.missing if not rsync.is_temp_name(e.path.rpartition("/")[2])]
        if not missing or self.seconds <= 0 or stopping:
            self._release()
            return []
        now = self._clock()
        first = now if since is None else min(since, now)
        seen = {e.path: self._seen.get(e.path, first) for e in missing}
        if not seen.keys() <= self._seen.keys():
            self._last_new = now
        self._seen = seen
        self._mass = self._mass or len(seen) > DELETE_BURST
        if self._mass:
            self.until = min(self._last_new + self.seconds,
                             min(seen.values()) + DELETE_HOLD_MAX_SECONDS)
            held = missing if now < self.until else []
        else:
            settle = min(DELETE_SETTLE_SECONDS, self.seconds)
            held = [e for e in missing if now < seen[e.path] + settle]
            self.until = min((seen[e.path] + settle for e in held), default=now)
        if not held:
            self._release()
            return []
        self._seen = {e.path: seen[e.path] for e in held}
        ids = {id(e) for e in held}
        p.listed = [e for e in p.listed if id(e) not in ids]
        return held

    def _release(self) -> None:
        self._seen = {}
        self._mass = False
