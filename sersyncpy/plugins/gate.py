"""Sync mode's rule for plugins: a change is passed on only once every remote of its root has
it. Holds each change's notice until each lane has pushed a batch carrying (or covering) it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Sequence
from typing import Callable

from sersyncpy.events import UPDATE, Event
from sersyncpy.plugins import Notice, notices_for

logger = logging.getLogger(__name__)


class _Waiting:
    __slots__ = ("seq", "order", "notice", "lanes")

    def __init__(self, seq: int, order: int, notice: Notice, lanes: set):
        self.seq = seq
        self.order = order  # place among all notices recorded: the order of release
        self.notice = notice
        self.lanes = lanes  # those that have not pushed it yet


def _ancestors(rel: str):
    """'' and every directory above rel: 'a/b/c' -> '', 'a', 'a/b'."""
    yield ""
    end = rel.find("/")
    while end != -1:
        yield rel[:end]
        end = rel.find("/", end + 1)


class Gate:
    """Notices wait here, one per path (the latest), until every lane of their root pushed
    them; then they go to `release` in the order they were seen."""

    def __init__(self, roots: Sequence[str], lanes: Sequence[Sequence[Hashable]],
                 release: Callable[[list[Notice]], None], limit: int,
                 drop: Callable[[int, str], None]):
        self._roots = list(roots)
        self._lanes = [frozenset(group) for group in lanes]
        self._release = release
        self._limit = limit
        self._drop = drop
        self._lock = threading.Lock()
        self._seq = 0
        self._order = 0
        self._waiting: dict[tuple[int, str], _Waiting] = {}  # (root index, rel) -> notice

    def record(self, root_index: int, events: list[Event]) -> int:
        """Note what the watcher reported; returns the sequence number the lanes are given
        with these events."""
        notices = notices_for(self._roots[root_index], events, time.time())
        with self._lock:
            self._seq += 1
            seq = self._seq
            for notice in notices:
                key = (root_index, notice.rel)
                if notice.kind == "delete" and notice.is_dir:
                    # The directory's own notice stands for what was below it, as in sersync.
                    prefix = notice.rel + "/"
                    for other in [k for k in self._waiting if k[0] == root_index
                                  and k[1].startswith(prefix)]:
                        del self._waiting[other]
                self._waiting.pop(key, None)  # re-inserted last: the dict stays in seq order
                self._order += 1
                self._waiting[key] = _Waiting(seq, self._order, notice,
                                              set(self._lanes[root_index]))
            over = len(self._waiting) - self._limit
            for key in list(self._waiting)[:max(0, over)]:
                del self._waiting[key]
        if over > 0:
            self._drop(over, "too many changes waiting for a remote")
        return seq

    def pushed(self, root_index: int, lane: Hashable, events: list[Event], seq: int) -> None:
        """`lane` pushed these events, taken when it had been given everything up to `seq`."""
        exact = set()
        covering = set()
        for e in events:
            exact.add(e.path)
            if e.kind != UPDATE:  # a subtree, a rename, a full sync or a deletion: all below
                covering.add(e.path)
            if e.src is not None:
                exact.add(e.src)
                covering.add(e.src)
        released: list[_Waiting] = []
        with self._lock:
            if covering:
                keys = [k for k in self._waiting if k[0] == root_index]
            else:
                keys = [(root_index, path) for path in exact]
            for key in keys:
                waiting = self._waiting.get(key)
                if waiting is None or waiting.seq > seq:
                    continue
                rel = key[1]
                if rel not in exact and not any(a in covering for a in _ancestors(rel)):
                    continue
                waiting.lanes.discard(lane)
                if not waiting.lanes:
                    del self._waiting[key]
                    released.append(waiting)
        self._hand_over(released)

    def set_lanes(self, root_index: int, lanes: Sequence[Hashable]) -> None:
        """A reload changed the remotes of a root: a removed one is waited for no more."""
        released: list[_Waiting] = []
        with self._lock:
            self._lanes[root_index] = frozenset(lanes)
            for key, waiting in list(self._waiting.items()):
                if key[0] != root_index:
                    continue
                waiting.lanes &= self._lanes[root_index]
                if not waiting.lanes:
                    del self._waiting[key]
                    released.append(waiting)
        self._hand_over(released)

    def _hand_over(self, released: list[_Waiting]) -> None:
        """Outside the lock: to the plugin, in the order the changes were seen."""
        if released:
            released.sort(key=lambda w: w.order)
            self._release([w.notice for w in released])

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)
