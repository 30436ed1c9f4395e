"""The watcher thread: kernel events of every watch root turned into Events (moves paired by
cookie, Rules applied), root health and overflow. Its source is inotify (watchtable.py: a watch
per directory) or fanotify (fanwatch.py: a mark per file system). Unlike sersync, ATTRIB is a
metadata update (not a delete), and an overflow resyncs.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from inotify_simple import flags as F

from sersyncpy import rsync
from sersyncpy.diskstate import Unreadable, root_present
from sersyncpy.events import DELETE, FULL, RENAME, SUBTREE, UPDATE, Event
from sersyncpy.mounts import MountChanges, mount_ids_below, mount_table
from sersyncpy.rules import Rules, below_excluded
from sersyncpy.watchsource import AUTO, FANOTIFY, RawEvent, choose_source
from sersyncpy.watchtable import Root
from sersyncpy.worker import Worker

logger = logging.getLogger(__name__)

# Events that bring a file's content, as opposed to its going.
_ARRIVALS = F.CREATE | F.CLOSE_WRITE | F.MODIFY | F.ATTRIB | F.MOVED_TO

# How long an unpaired MOVED_FROM waits for its MOVED_TO before it counts as a delete.
MOVE_PAIR_SECONDS = 0.01
# Bytes of kernel events read at once: ~2,000 events of short names, ~240 of the longest.
READ_BYTES = 64 * 1024
# How often the roots are checked (deleted, replaced by a mount, back again).
ROOT_CHECK_SECONDS = 1.0
# How often directories that could not be watched (the inotify watch limit) are tried again
# and, while they stay unwatched, resynced whole; SERSYNCPY_UNWATCHED_RESYNC_SECONDS sets it.
UNWATCHED_RESYNC_SECONDS = 60.0
# At stop, how long the events already queued in the kernel are read before giving up on a
# storm that does not end and resyncing every root instead.
STOP_DRAIN_SECONDS = 1.0


class _MoveFrom:
    """A MOVED_FROM waiting for its MOVED_TO; it keeps its place in the order of events."""

    __slots__ = ("rel", "is_dir", "paired", "event")

    def __init__(self, rel: str, is_dir: bool):
        self.rel = rel
        self.is_dir = is_dir
        self.paired = False
        self.event: Optional[Event] = None  # what it became once paired (None: nothing)


class _Created:
    """A new file, not a directory: pushed at the end of the read unless its CLOSE_WRITE came
    in the same read (then that pushes it), sparing an lstat per file in a burst."""

    __slots__ = ("rel", "closed")

    def __init__(self, rel: str):
        self.rel = rel
        self.closed = False


@dataclass
class _Read:
    """One read of kernel events as it is translated: what it became, in order (Events, and
    the MOVED_FROMs and new files that the rest of the read decides), and those still open."""

    out: list[tuple[Root, object]] = field(default_factory=list)
    moves: dict[int, _MoveFrom] = field(default_factory=dict)  # cookie -> MOVED_FROM in out
    creates: dict[tuple[int, str], _Created] = field(default_factory=dict)  # new files in out


class Watcher(Worker):
    """Watches every root; calls sink(root_index, events) with events in the order they came."""

    def __init__(
        self, roots: Sequence[str], rules: Rules,
        sink: Callable[[int, list[Event]], None],
        unwatched_resync: float = UNWATCHED_RESYNC_SECONDS,
        raise_limits: bool = False,
        unreadable: Optional[Sequence[Unreadable]] = None,
        use: str = AUTO,
        plugin: bool = False,
    ):
        super().__init__("watcher")
        self._rules = rules
        self._sink = sink
        self._unwatched_resync = unwatched_resync
        # Opened before the source looks at the mounts, so that none is missed in between.
        self._mount_changes = MountChanges()
        self._mounted = [set(mount_ids_below(os.path.realpath(p))) for p in roots]
        # A directory moved: the mount points below it moved too, which the mount table's
        # poll does not tell.
        self._dirs_moved = False
        try:
            self.table, why = choose_source(
                use, roots, rules,
                list(unreadable) if unreadable else [Unreadable(p) for p in roots],
                unwatched_resync, raise_limits, plugin)
        except BaseException:
            self._mount_changes.close()
            raise
        self.kind = self.table.kind
        logger.info("watcher: %s (%s)", self.table.describe(), why)
        self.overflows = 0

    def use_rules(self, rules: Rules) -> None:
        """What is pushed from the next event on (reload). <inotify><modify> is in the watch
        mask, so a change of it takes a restart."""
        self._rules = rules
        self.table.excluded = rules.is_excluded

    def watch_all(self) -> int:
        """Add watches on every directory of every root; returns how many are watched."""
        return self.table.watch_all()

    def counts(self) -> list[tuple[int, int]]:
        """Per root: (directories watched, directories that could not be watched)."""
        return self.table.counts()

    @property
    def watch_count(self) -> int:
        return self.table.watch_count

    @property
    def on_progress(self) -> Optional[Callable[[int], None]]:
        """Called with the number of directories watched so far, now and then."""
        return self.table.on_progress

    @on_progress.setter
    def on_progress(self, callback: Optional[Callable[[int], None]]) -> None:
        self.table.on_progress = callback

    # -- the loop -----------------------------------------------------------------------

    def work(self) -> None:
        """Read events (waking every 200 ms to see a stop), check the roots every second,
        and retry the directories that could not be watched."""
        next_root_check = time.monotonic() + ROOT_CHECK_SECONDS
        next_resync = time.monotonic() + self._unwatched_resync
        while not self.stopping():
            raw = self._read(200)
            if raw:
                self.process(raw)
            now = time.monotonic()
            if now >= next_root_check:
                next_root_check = now + ROOT_CHECK_SECONDS
                self._deliver(self._check_roots())
                self._deliver(self._check_mounts())
            if now >= next_resync:
                next_resync = now + self._unwatched_resync
                self._deliver([(root, Event(FULL, rel, True))
                               for root, rel in self.table.retry()])
        self._drain()

    def _drain(self) -> None:
        """Hand on what the kernel queued before the stop: a change made just before SIGTERM
        is pushed, or left in the fail log, like any other. A storm still going on after
        STOP_DRAIN_SECONDS is left as a resync of every root."""
        deadline = time.monotonic() + STOP_DRAIN_SECONDS
        while (raw := self._read(0)) is not None:
            if raw:
                self.process(raw)
            if time.monotonic() >= deadline:
                logger.warning("the watch roots were still changing at stop: leaving a resync "
                               "of every root")
                self._deliver([(root, Event(FULL, "", True)) for root in self.table.roots])
                return

    def finish(self) -> None:
        self.table.close()
        self._mount_changes.close()

    def _read(self, timeout_ms: int) -> Optional[list[RawEvent]]:
        """The kernel events that READ_BYTES hold (whole events only), waiting at most
        `timeout_ms` for the first; None when there was nothing to read (a fanotify read
        can give [] when all it read was outside the roots). Never the whole queue at once:
        with a raised fs.inotify.max_queued_events a watcher that fell behind read a million
        events in one go and held ~450 B of Python objects for each (680 MiB under
        stress-ng)."""
        poller = select.poll()
        poller.register(self.table.fileno(), select.POLLIN)
        if not poller.poll(timeout_ms):
            return None
        try:
            return self.table.read(READ_BYTES)
        except BlockingIOError:
            return None

    def process(self, raw: list[RawEvent]) -> None:
        """Turn one read of kernel events into Events and hand them to the sink, per root."""
        read = _Read()
        self._translate(raw, read)
        if read.moves and self.table.pairs_later:
            more = self._read(int(MOVE_PAIR_SECONDS * 1000))
            if more:
                self._translate(more, read)
        self._deliver(read.out)

    def _deliver(self, out: list) -> None:
        by_root: dict[int, list[Event]] = {}
        for root, item in out:
            if isinstance(item, _MoveFrom):
                item = item.event if item.paired else self._moved_out(root, item)
                if item is None:
                    continue
            elif isinstance(item, _Created):
                if item.closed or self._closes_later(root, item.rel):
                    continue
                item = Event(UPDATE, item.rel, False)
            by_root.setdefault(root.index, []).append(item)
        for index, events in by_root.items():
            self._sink(index, events)

    # -- one kernel event ---------------------------------------------------------------

    def _translate(self, raw: list[RawEvent], read: _Read) -> None:
        for mask, root, d, name, cookie in raw:
            if mask & F.Q_OVERFLOW:
                self._overflow(read.out)
            elif name:
                self._entry(read, root, f"{d}/{name}" if d else name, name, mask, cookie)
            elif mask & (F.DELETE_SELF | F.MOVE_SELF) and d == "":
                self._root_lost(root, read.out, "was deleted or moved away")
            # other events about a directory itself come from its parent too

    def _entry(self, read: _Read, root: Root, rel: str, name: str, mask: int,
               cookie: int) -> None:
        """An event about an entry of a watched directory, by kind, unless the rules drop it."""
        rules = self._rules
        is_dir = bool(mask & F.ISDIR)
        if self._dropped(name, rel, is_dir, mask):
            return
        if mask & F.MOVED_FROM:
            self._moved_from(read, root, rel, is_dir, cookie)
        elif mask & F.MOVED_TO:
            self._moved_to(root, rel, is_dir, read.moves.pop(cookie, None), read.out)
        elif mask & F.CREATE:
            self._on_create(read, root, rel, is_dir)
        elif mask & F.DELETE:
            self._on_delete(read, root, rel, is_dir)
        elif mask & F.CLOSE_WRITE:
            self._on_close_write(read, root, rel)
        elif mask & F.MODIFY:
            if rules.modify:
                read.out.append((root, Event(UPDATE, rel, False)))
        elif mask & F.ATTRIB:  # sersync made it a delete, and dropped the subtree's watches
            if rules.attrib:
                read.out.append((root, Event(UPDATE, rel, is_dir)))

    def _dropped(self, name: str, rel: str, is_dir: bool, mask: int) -> bool:
        rules = self._rules
        if not is_dir and rules.is_temp(name):
            return True
        if not is_dir and mask & _ARRIVALS and rsync.is_temp_name(name):
            # An rsync receiver's temporary file, renamed into place a moment later: its
            # content is never pushed; its going (the rename's source) still is, so that
            # a copy a directory push or a full sync made is deleted.
            return True
        return rules.is_excluded(rel, is_dir)

    def _on_create(self, read: _Read, root: Root, rel: str, is_dir: bool) -> None:
        if is_dir:
            # Watch first, then push the whole directory: whatever was written into it before
            # the watch existed is on disk when the push reads it.
            self.table.dir_created(root, rel)
            read.out.append((root, Event(SUBTREE, rel, True)))
        elif self._rules.create_file:
            read.out.append((root, Event(UPDATE, rel, False)))
        else:
            read.creates[(root.index, rel)] = created = _Created(rel)
            read.out.append((root, created))

    def _on_delete(self, read: _Read, root: Root, rel: str, is_dir: bool) -> None:
        if is_dir:
            self.table.dir_deleted(root, rel)
        if self._rules.delete:
            read.out.append((root, Event(DELETE, rel, is_dir)))

    def _on_close_write(self, read: _Read, root: Root, rel: str) -> None:
        if self._rules.close_write:
            created = read.creates.pop((root.index, rel), None)
            if created is not None:
                created.closed = True
            read.out.append((root, Event(UPDATE, rel, False)))

    def _closes_later(self, root: Root, rel: str) -> bool:
        """A new regular file gets a CLOSE_WRITE; a symlink, a hard link or a device does not,
        so sersync (createFile off) never pushed them. We do."""
        if not self._rules.close_write:
            return False
        try:
            st = os.lstat(self.table.path(root, rel))
        except OSError:
            return True  # gone already; its DELETE follows
        return st.st_nlink == 1 and (st.st_mode & 0o170000) == 0o100000

    # -- move pairing: a MOVED_FROM and the MOVED_TO of the same cookie are one rename ----

    def _moved_from(self, read: _Read, root: Root, rel: str, is_dir: bool, cookie: int) -> None:
        read.moves[cookie] = _MoveFrom(rel, is_dir)
        read.out.append((root, read.moves[cookie]))

    def _moved_to(self, root: Root, rel: str, is_dir: bool, source: Optional[_MoveFrom],
                  out: list) -> None:
        rules = self._rules
        if source is not None:
            # A move inside the tree: the MOVED_FROM's place in the order gets the result.
            source.paired = True
            if is_dir:
                self.table.dir_moved(root, source.rel, rel)
                self._dirs_moved = True
            if rules.move_from and rules.move_to:
                source.event = Event(RENAME, rel, is_dir, source.rel)
                return
            if rules.move_from:
                source.event = Event(DELETE, source.rel, is_dir)
        if is_dir:
            self.table.dir_created(root, rel)
        if rules.move_to:
            out.append((root, Event(SUBTREE, rel, True) if is_dir else Event(UPDATE, rel, False)))

    def _moved_out(self, root: Root, source: _MoveFrom) -> Optional[Event]:
        if source.is_dir:
            self.table.dir_moved_out(root, source.rel)
            self._dirs_moved = True
        return Event(DELETE, source.rel, source.is_dir) if self._rules.move_from else None

    # -- root health and overflow -------------------------------------------------------

    def _root_lost(self, root: Root, out: list, why: str) -> None:
        """The root itself went: a DELETE of "" covers every pending change below it, and the
        lanes push nothing (no mass deletion) until the root is back."""
        if root.gone:
            return
        root.gone = True
        logger.error("the watch root %s %s: replication of it is paused until it is back",
                     root.path, why)
        self.table.root_lost(root)
        out.append((root, Event(DELETE, "", True)))

    def _check_roots(self) -> list:
        out: list = []
        self.table.expire_missed()
        for root in self.table.roots:
            present = root_present(root.path, root.dev)
            if not present and not root.gone:
                self._root_lost(root, out, "is gone or was replaced by another mount")
            elif present and root.gone:
                root.gone = False
                logger.warning("the watch root %s is back: watching and resyncing it",
                               root.path)
                self.table.root_back(root)
                out.append((root, Event(FULL, "", True)))
        return out

    def _check_mounts(self) -> list:
        """A file system mounted below a root, or unmounted from below it (no inotify or
        fanotify event tells either): the source is told which mount shows at each mount
        point that changed, and what shows there now is resynced."""
        moved, self._dirs_moved = self._dirs_moved, False
        if not self._mount_changes.changed() and not (moved and any(self._mounted)):
            return []
        out: list = []
        table = mount_table()
        for root in self.table.roots:
            listed = mount_ids_below(root.path, table)
            now = set(listed)
            before, self._mounted[root.index] = self._mounted[root.index], now
            showing = dict((point, id_) for id_, point in listed)  # the top of a stack
            # Unmounts first: a mount moved (mount --move) leaves its old place, then shows.
            for point in sorted({point for _id, point in now ^ before},
                                key=lambda point: (point in showing, point)):
                rel = point[len(root.path.rstrip("/")) + 1:]
                if root.gone or below_excluded(self._rules.is_excluded, rel):
                    continue
                mount_id = showing.get(point)
                self.table.mount_changed(root, rel, mount_id)
                if mount_id is None and not os.path.lexists(point):
                    continue  # moved away with a directory above it: the move carried it
                logger.warning("the mounts on %s changed: resyncing what shows there now",
                               point)
                out.append((root, Event(FULL, rel, True) if os.path.isdir(point)
                            else Event(UPDATE, rel, False)))  # a file bind-mounted on a file
        return out

    def _overflow(self, out: list) -> None:
        """Events were lost: watch whatever is new and resync every root with the quick check."""
        self.overflows += 1
        if self.kind == FANOTIFY:
            logger.warning("fanotify queue overflow: events were lost; resyncing every watch "
                           "root")
        else:
            logger.warning("inotify queue overflow: events were lost; rescanning and "
                           "resyncing every watch root (raise fs.inotify.max_queued_events "
                           "to avoid this)")
        for root in self.table.roots:
            self.table.overflowed(root)
            out.append((root, Event(FULL, "", True)))
