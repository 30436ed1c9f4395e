"""The pure-Python filter queue: the executable specification of how pending changes collapse.

The compiled queue (src/_filterqueue.pyx) must behave exactly like this class; the tests feed
both the same sequences. It replaces sersync's QueueFilter, which merged only among the ten
newest entries and scanned the whole deque on every directory delete.

The queue holds one pending state per path, kept in the order of each path's latest change:
- the latest kind wins, so repeated writes are one UPDATE, and a create followed by a delete
  is a single DELETE;
- a directory DELETE covers the changes below it that came before it, whatever comes later for
  that path (a file, a symlink, the directory made again, a rename onto it), and even when the
  DELETE itself is covered: each directory keeps the seq of its latest deletion, its
  watermark, until take(), apart from the path's pending state. Otherwise `mv t t.old;
  ln -s /root t` brings back the older changes below t, and rsync follows the symlink to send
  /root's files (issue 12);
- a SUBTREE, RENAME or FULL directory covers every change below it, earlier or later, because
  its push reads the whole directory as it is at push time; except a directory RENAME, which
  stays, so that it is pushed first and the covering push finds its data on the remote;
- renames chain: a -> b -> c is pending as c renamed from a, with a and b deleted (and a
  and b keep their watermarks);
- a requeued batch is older than everything pending, watermarks included, so a directory
  deleted since the batch was taken covers its entries.
Covered entries are dropped when the batch is taken, so a push costs O(depth) at most and the
queue is never scanned per event.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Optional

from sersyncpy.events import COVERING, DELETE, FULL, RENAME, SUBTREE, UPDATE, Event

# An entry is a list [kind, is_dir, src, seq]: cheap, and the fields of the compiled queue's
# _Entry.
_KIND, _IS_DIR, _SRC, _SEQ = range(4)

IMPLEMENTATION = "python"


class FilterQueue:
    """Pending changes of one watch root for one remote, collapsed; not thread-safe."""

    def __init__(self) -> None:
        self._entries: dict[str, list] = {}
        self._covering: set[str] = set()  # pending directories of a COVERING kind
        # Directory -> seq of its latest directory DELETE pushed since take(), whatever its
        # pending state is now: the watermark below which entries are dropped. A requeued
        # DELETE sets none: what its batch held below it is newer, or was dropped at take().
        self._deleted: dict[str, int] = {}
        self._seq = 0
        self._requeued = False  # entries older than the newest were put back: sort on take

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def push(self, kind: int, path: str, is_dir: bool = False, src: Optional[str] = None) -> None:
        """Record one change; `src` is the old path of a RENAME."""
        if kind != RENAME:
            self._apply(kind, path, is_dir)
        elif src is None:
            raise ValueError("a RENAME needs its source path")
        elif not is_dir:
            # A file cannot be linked against its old name.
            self._apply(DELETE, src, False)
            self._apply(UPDATE, path, False)
        else:
            prev = self._entries.get(src)
            origin = prev[_SRC] if prev is not None and prev[_KIND] == RENAME else src
            self._apply(DELETE, src, True)
            self._seq += 1
            self._set(path, RENAME, True, origin, self._seq)

    def push_many(self, events: Iterable[Event]) -> None:
        """push() each (kind, path, is_dir, src) of `events`, in order: one watcher read."""
        for kind, path, is_dir, src in events:
            self.push(kind, path, is_dir, src)

    def _apply(self, kind: int, path: str, is_dir: bool) -> None:
        self._seq += 1
        if kind == DELETE and is_dir:
            # Before the covered check: a covering ancestor does not drop the RENAME entries
            # below this directory, so its deletion must, even when it adds no entry itself.
            self._deleted[path] = self._seq
        if self._covering and self._is_covered(path):
            return
        prev = self._entries.get(path)
        if prev is not None and kind == UPDATE:
            if prev[_KIND] in COVERING:
                return  # its push sends this path too
            if prev[_KIND] == DELETE and prev[_IS_DIR] and is_dir:
                kind = SUBTREE  # the directory came back: the remote's old content must go
        self._set(path, kind, is_dir, None, self._seq)

    def _set(self, path: str, kind: int, is_dir: bool, src: Optional[str], seq: int) -> None:
        # Re-inserting moves the path to the end: batches follow each path's latest change.
        self._entries.pop(path, None)
        self._entries[path] = [kind, is_dir, src, seq]
        self._covering.discard(path)
        if is_dir and kind in COVERING:
            self._covering.add(path)

    def _is_covered(self, path: str) -> bool:
        """Whether a pending ancestor of `path` sends its whole content."""
        covering = self._covering
        while path:
            cut = path.rfind("/")
            path = path[:cut] if cut > 0 else ""
            if path in covering:
                return True
        return False

    def _is_dropped(self, path: str, seq: int) -> bool:
        """Whether a pending ancestor makes the entry at `path` redundant."""
        renamed = self._entries[path][_KIND] == RENAME
        while path:
            cut = path.rfind("/")
            path = path[:cut] if cut > 0 else ""
            if path in self._covering and not renamed:
                return True
            if self._deleted.get(path, seq) > seq:  # deleted after this entry's change
                return True
        return False

    def take(self) -> list[Event]:
        """Return every pending change, collapsed and in order, and empty the queue."""
        batch = self.peek()
        self._entries = {}
        self._covering = set()
        self._deleted = {}
        self._requeued = False
        return batch

    def peek(self) -> list[Event]:
        """What take() would return, leaving the queue as it is (for the fail log)."""
        if not self._entries:
            return []
        items = self._entries.items()
        if self._requeued:
            items = sorted(items, key=lambda item: item[1][_SEQ])
        if self._covering or self._deleted:
            return [
                Event(e[_KIND], p, e[_IS_DIR], e[_SRC]) for p, e in items
                if not self._is_dropped(p, e[_SEQ])
            ]
        return [Event(e[_KIND], p, e[_IS_DIR], e[_SRC]) for p, e in items]

    def requeue(self, batch: list[Event]) -> None:
        """Put back a batch that did not reach the remote, as older than anything pending."""
        # Older than the watermarks too: an entry's path may have changed since its deletion.
        oldest = min(chain((e[_SEQ] for e in self._entries.values()), self._deleted.values()),
                     default=self._seq + 1)
        seq = oldest - len(batch) - 1
        for event in batch:
            seq += 1
            newer = self._entries.get(event.path)
            if newer is None:
                self._set(event.path, event.kind, event.is_dir, event.src, seq)
                self._requeued = True
            elif event.kind in COVERING and newer[_KIND] not in COVERING:
                # The newer change keeps its place, but must still carry the whole directory.
                kind = FULL if event.kind == FULL else SUBTREE
                self._set(event.path, kind, True, None, newer[_SEQ])
                self._requeued = True
