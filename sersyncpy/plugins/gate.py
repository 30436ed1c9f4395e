"""Sync mode's rule for plugins: a change is passed on only once every remote of its root has
it. Holds each change's notice until each lane has pushed a batch carrying (or covering) it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from itertools import islice
from typing import Optional

from sersyncpy.events import UPDATE, Event
from sersyncpy.plugins import Notice, notices_for
from sersyncpy.rules import Excluded

logger = logging.getLogger(__name__)


class _Waiting:
    __slots__ = ("seq", "order", "notice", "lanes")

    def __init__(self, seq: int, order: int, notice: Notice, lanes: set[Hashable]):
        self.seq = seq
        self.order = order  # place among all notices recorded: the order of release
        self.notice = notice
        self.lanes = lanes  # those that have not pushed it yet


def _parent(rel: str) -> str:
    """The directory rel is directly in: 'a/b/c' -> 'a/b', 'a' -> '' (the root)."""
    cut = rel.rfind("/")
    return rel[:cut] if cut >= 0 else ""


class _Tree:
    """One root's waiting paths as a tree: each directory with the names directly below it
    that wait or lead to one that waits, so the paths below a directory are found in time
    proportional to their number (a scan of every waiting path made 10,000 rmdirs quadratic).
    """

    __slots__ = ("_below",)

    def __init__(self) -> None:
        self._below: dict[str, set[str]] = {}  # directory -> children that wait or lead to one

    def add(self, rel: str) -> None:
        """Link a waiting rel and the directories above it ("" is the root: no parent)."""
        while rel:
            parent = _parent(rel)
            below = self._below.get(parent)
            if below is not None:
                below.add(rel)
                return  # parent is linked already (or is the root)
            self._below[parent] = {rel}
            rel = parent

    def discard(self, rel: str, waits: Callable[[str], bool]) -> None:
        """rel waits no more: unlink it, and each directory above left leading nowhere."""
        while rel and rel not in self._below and not waits(rel):
            parent = _parent(rel)
            below = self._below[parent]
            below.discard(rel)
            if below:
                return
            del self._below[parent]
            rel = parent

    def below(self, rel: str) -> Iterator[str]:
        """Every rel linked under rel (rel itself excluded), waiting or only leading on."""
        stack = list(self._below.get(rel, ()))
        while stack:
            child = stack.pop()
            yield child
            stack.extend(self._below.get(child, ()))

    def cut(self, rel: str) -> list[str]:
        """Unlink everything under rel and return it; rel stays linked to its parent."""
        gone = list(self.below(rel))
        for child in gone:
            self._below.pop(child, None)
        self._below.pop(rel, None)
        return gone


class Gate:
    """Notices wait here, one per path (the latest), until every lane of their root pushed
    them; then they go to `release` in the order they were seen."""

    def __init__(self, roots: Sequence[str], lanes: Sequence[Sequence[Hashable]],
                 release: Callable[[list[Notice]], None], limit: int,
                 drop: Callable[[int, str], None], inside: bool = False,
                 excluded: Optional[Excluded] = None):
        self._roots = list(roots)
        self._inside = inside  # notices_for: each file of a directory that arrives whole
        self._excluded = excluded
        self._lanes = [frozenset(group) for group in lanes]
        self._release = release
        self._limit = limit
        self._drop = drop
        self._lock = threading.Lock()
        self._seq = 0
        self._order = 0
        # (root index, rel) -> notice, oldest first (a re-recorded path moves to the end)
        self._waiting: dict[tuple[int, str], _Waiting] = {}
        self._trees = [_Tree() for _ in self._roots]

    def record(self, root_index: int, events: list[Event]) -> int:
        """Note what the watcher reported; returns the sequence number the lanes are given
        with these events."""
        notices = notices_for(self._roots[root_index], events, time.time(), self._inside,
                              self._excluded)
        tree = self._trees[root_index]
        with self._lock:
            self._seq += 1
            seq = self._seq
            for notice in notices:
                key = (root_index, notice.rel)
                if notice.kind == "delete" and notice.is_dir and notice.rel:
                    # The directory's own notice stands for what was below it, as in sersync.
                    # (No notice deletes the root: '' would cut the whole tree.)
                    for rel in tree.cut(notice.rel):
                        self._waiting.pop((root_index, rel), None)
                self._waiting.pop(key, None)  # re-inserted last: the dict stays in seq order
                self._order += 1
                self._waiting[key] = _Waiting(seq, self._order, notice,
                                              set(self._lanes[root_index]))
                tree.add(notice.rel)
            over = len(self._waiting) - self._limit
            if over > 0:  # the oldest only: copying every key per record was quadratic too
                for key in list(islice(self._waiting, over)):
                    self._forget(key)
        if over > 0:
            self._drop(over, "too many changes waiting for a remote")
        return seq

    def pushed(self, root_index: int, lane: Hashable, events: list[Event], seq: int) -> None:
        """`lane` pushed these events, taken when it had been given everything up to `seq`."""
        exact: set[str] = set()
        covering: set[str] = set()
        for e in events:
            exact.add(e.path)
            if e.kind != UPDATE:  # a subtree, a rename, a full sync or a deletion: all below
                covering.add(e.path)
            if e.src is not None:
                exact.add(e.src)
                covering.add(e.src)
        released: list[_Waiting] = []
        with self._lock:
            tree = self._trees[root_index]
            candidates = set(exact)
            for rel in covering:
                candidates.update(tree.below(rel))
            for rel in candidates:
                key = (root_index, rel)
                waiting = self._waiting.get(key)
                if waiting is None or waiting.seq > seq:
                    continue
                waiting.lanes.discard(lane)
                if not waiting.lanes:
                    self._forget(key)
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
                    self._forget(key)
                    released.append(waiting)
        self._hand_over(released)

    def _forget(self, key: tuple[int, str]) -> None:
        """Under the lock: the notice of key waits no more."""
        del self._waiting[key]
        root_index = key[0]
        self._trees[root_index].discard(key[1], lambda rel: (root_index, rel) in self._waiting)

    def _hand_over(self, released: list[_Waiting]) -> None:
        """Outside the lock: to the plugin, in the order the changes were seen."""
        if released:
            released.sort(key=lambda w: w.order)
            self._release([w.notice for w in released])

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)
