"""Recursive inotify watch of every watch root, turning kernel events into Events.

Owns the watch descriptors, new directories (watched first, then scanned), move pairing by
cookie, the temp-file and <filter> rules, and overflow. Unlike sersync, ATTRIB is a metadata
update (sersync made it a delete and dropped the subtree's watches) and an overflow resyncs.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from inotify_simple import INotify
from inotify_simple import flags as F

from sersyncpy import limits, rsync
from sersyncpy.diskstate import Unreadable
from sersyncpy.errors import SersyncpyError
from sersyncpy.events import DELETE, FULL, RENAME, SUBTREE, UPDATE, Event

logger = logging.getLogger(__name__)

# What the watcher always needs to stay correct, whatever <inotify> says is pushed.
BASE_MASK = (
    F.CREATE | F.DELETE | F.MOVED_FROM | F.MOVED_TO | F.CLOSE_WRITE | F.ATTRIB
    | F.DELETE_SELF | F.MOVE_SELF | F.DONT_FOLLOW | F.EXCL_UNLINK | F.ONLYDIR
)

# Events that bring a file's content, as opposed to its going.
_ARRIVALS = F.CREATE | F.CLOSE_WRITE | F.MODIFY | F.ATTRIB | F.MOVED_TO

# How long an unpaired MOVED_FROM waits for its MOVED_TO before it counts as a delete.
MOVE_PAIR_SECONDS = 0.01
# How often the roots are checked (deleted, replaced by a mount, back again).
ROOT_CHECK_SECONDS = 1.0
# How often directories that could not be watched (the inotify watch limit) are tried again
# and, while they stay unwatched, resynced whole; SERSYNCPY_UNWATCHED_RESYNC_SECONDS sets it.
UNWATCHED_RESYNC_SECONDS = 60.0
# How long a directory that vanished before it could be watched is remembered, in case the
# rename that moved it is still to be read.
MISSED_SECONDS = 5.0


@dataclass(frozen=True)
class Rules:
    """Which changes are pushed: sersync's <inotify> flags, <filter> and its temp-file rule."""

    delete: bool = True
    create_file: bool = False
    close_write: bool = True
    move_from: bool = True
    move_to: bool = True
    attrib: bool = False
    modify: bool = False
    excludes: tuple[re.Pattern, ...] = ()
    keep_dotfiles: bool = True

    def is_temp(self, name: str) -> bool:
        """With keepDotfiles="false", sersync's rule: never vim's probe `4913`, an `x~`
        backup or a dotfile (.htaccess included). By default every name is pushed."""
        return not self.keep_dotfiles and (
            name == "4913" or name.endswith("~") or name.startswith("."))

    def is_excluded(self, rel: str, is_dir: bool) -> bool:
        """sersync's subjects: `name` in the root, `/dir/name` deeper; `dir/` for directories
        at the initial scan. We test both, so a directory is excluded however it appears."""
        if not self.excludes:
            return False
        subject = rel if "/" not in rel else "/" + rel
        for rx in self.excludes:
            if rx.fullmatch(subject) or (is_dir and rx.fullmatch(rel + "/")):
                return True
        return False


def _inotify_instance(raise_limits: bool) -> INotify:
    try:
        return INotify()
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            raise SersyncpyError(f"cannot start inotify: {exc.strerror or exc}") from None
        current = limits.read("max_user_instances")
        needed = (current or 128) + 1
        if raise_limits and limits.raise_to("max_user_instances", needed):
            return INotify()
        raise SersyncpyError("cannot start inotify: this user has all the inotify instances "
                             "the kernel allows; "
                             + limits.advice("max_user_instances", current, needed)) from None


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
class _Root:
    index: int
    path: str
    wds: dict[str, int] = field(default_factory=dict)  # rel dir -> wd
    dev: int = 0  # st_dev when first watched: another value means another mount
    gone: bool = False


class Watcher(threading.Thread):
    """Watches every root; calls sink(root_index, events) with events in the order they came."""

    def __init__(
        self, roots: Sequence[str], rules: Rules,
        sink: Callable[[int, list[Event]], None],
        unwatched_resync: float = UNWATCHED_RESYNC_SECONDS,
        raise_limits: bool = False,
        unreadable: Optional[Sequence[Unreadable]] = None,
    ):
        super().__init__(name="watcher", daemon=True)
        self.rules = rules
        self._sink = sink
        self._unwatched: set[tuple[int, str]] = set()  # (root index, rel dir) not watched
        # (root index, rel dir) we may not read (mkdir -m 700 by another user, when we are
        # not root or the tree is root_squash NFS): not watched, not pushed, tried again;
        # named and counted by the root's Unreadable, which its lanes share.
        self._unreadable: set[tuple[int, str]] = set()
        self.unreadable = list(unreadable) if unreadable else [Unreadable(p) for p in roots]
        # (root index, rel dir) -> when: gone (ENOENT) as we tried to watch it; perhaps
        # renamed by an event not read yet (mkdir -p a/b && mv a c).
        self._missed: dict[tuple[int, str], float] = {}
        self._unwatched_resync = unwatched_resync
        # The real path: a root that is a symlink (/var/www -> /data/www) must be followed,
        # while every watch below it uses IN_DONT_FOLLOW.
        self._roots = [_Root(i, os.path.realpath(p)) for i, p in enumerate(roots)]
        self._inotify = _inotify_instance(raise_limits)
        self.raise_limits = raise_limits
        self.on_progress: Optional[Callable[[int], None]] = None  # directories watched so far
        self._mask = BASE_MASK | (F.MODIFY if rules.modify else 0)
        self._by_wd: dict[int, tuple[_Root, str]] = {}
        self._stopping = threading.Event()
        self.overflows = 0
        self._progress_count = 0

    # -- set-up and bookkeeping ---------------------------------------------------------

    def counts(self) -> list[tuple[int, int]]:
        """Per root: (directories watched, directories that could not be watched)."""
        unwatched = [0] * len(self._roots)
        for index, _rel in list(self._unwatched):
            unwatched[index] += 1
        return [(len(root.wds), unwatched[root.index]) for root in self._roots]

    def watch_all(self) -> int:
        """Add watches on every directory of every root; returns how many are watched."""
        self._progress_count = 0
        for root in self._roots:
            root.dev = os.stat(root.path).st_dev
            self._watch_tree(root, "")
        if self._unwatched:
            missing = self._count_unwatched()
            current = limits.read("max_user_watches")
            # The limit is reached, so every watch it allows is in use: we need `missing` more.
            needed = (current or len(self._by_wd)) + missing
            logger.error("%d directories cannot be watched: %s", missing,
                         limits.advice("max_user_watches", current, needed))
            if self.raise_limits and limits.raise_to("max_user_watches", needed):
                todo, self._unwatched = self._unwatched, set()
                for index, rel in sorted(todo):
                    self._watch_tree(self._roots[index], rel)
            if self._unwatched:
                self._warn_unwatched()
        return len(self._by_wd)

    def _count_unwatched(self) -> int:
        """Directories in the unwatched subtrees (not scanned when their top failed)."""
        count = 0
        for index, rel in self._unwatched:
            top = self._abs(self._roots[index], rel)
            for _dirpath, dirnames, _files in os.walk(top):
                count += 1
                dirnames[:] = [d for d in dirnames
                               if not os.path.islink(os.path.join(_dirpath, d))]
        return count

    @property
    def watch_count(self) -> int:
        return len(self._by_wd)

    def _abs(self, root: _Root, rel: str) -> str:
        return os.path.join(root.path, rel) if rel else root.path

    def _watch_one(self, root: _Root, rel: str) -> bool:
        try:
            wd = self._inotify.add_watch(self._abs(root, rel), self._mask)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                # Deleted (its parent reports it) or renamed: _move_tree retries it there.
                self._missed[(root.index, rel)] = time.monotonic()
                return False
            if exc.errno in (errno.EACCES, errno.EPERM):
                self._cannot_read(root, rel)
                return False
            if exc.errno != errno.ENOSPC:
                logger.error("cannot watch %s: %s", self._abs(root, rel), exc.strerror)
            # Not watched, so not silently missed: resynced whole until it can be watched.
            self._unwatched.add((root.index, rel))
            return False
        self._progress_count += 1
        if self.on_progress is not None and not self._progress_count & 4095:
            self.on_progress(self._progress_count)
        old = self._by_wd.get(wd)
        if old is not None and old[1] != rel:
            old[0].wds.pop(old[1], None)
        self._by_wd[wd] = (root, rel)
        root.wds[rel] = wd
        return True

    def _cannot_read(self, root: _Root, rel: str) -> None:
        """A directory we may not read: named and counted (Unreadable), not pushed (rsync
        could not read it either), and tried again every unwatched-resync period."""
        self._unreadable.add((root.index, rel))
        self.unreadable[root.index].report([rel])

    def _watch_tree(self, root: _Root, rel: str) -> None:
        """Watch `rel` and every directory below it: each watch first, then its listing, so
        nothing created meanwhile is missed."""
        stack = [rel]
        while stack:
            d = stack.pop()
            if not self._watch_one(root, d):
                continue
            try:
                with os.scandir(self._abs(root, d)) as it:
                    for entry in it:
                        # scandir falls back to lstat where d_type is unknown (old XFS), which
                        # is what sersync's <fileSystem xfs="true"> was for.
                        if entry.is_dir(follow_symlinks=False):
                            sub = f"{d}/{entry.name}" if d else entry.name
                            if not self.rules.is_excluded(sub, True):
                                stack.append(sub)
            except OSError:
                continue

    def _forget_tree(self, root: _Root, rel: str, remove: bool) -> None:
        """Drop the watches of `rel` and below (moved out, or the root lost)."""
        prefix = rel + "/" if rel else ""  # below the root is everything
        for d in [d for d in root.wds if d == rel or d.startswith(prefix)]:
            wd = root.wds.pop(d)
            self._by_wd.pop(wd, None)
            if remove:
                try:
                    self._inotify.rm_watch(wd)
                except OSError:
                    pass

    def _move_tree(self, root: _Root, src: str, dst: str) -> None:
        """A directory moved inside the root keeps its watches; only their paths change.
        What could not be watched below it because it had moved already is watched now."""
        prefix = src + "/"
        for d in [d for d in root.wds if d == src or d.startswith(prefix)]:
            wd = root.wds.pop(d)
            new = dst + d[len(src):]
            root.wds[new] = wd
            self._by_wd[wd] = (root, new)
        if self._missed:
            now = time.monotonic()
            for key, when in list(self._missed.items()):
                index, rel = key
                if now - when > MISSED_SECONDS:
                    del self._missed[key]
                elif index == root.index and (rel == src or rel.startswith(prefix)):
                    del self._missed[key]
                    self._watch_tree(root, dst + rel[len(src):])

    # -- the loop -----------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        next_root_check = time.monotonic() + ROOT_CHECK_SECONDS
        next_resync = time.monotonic() + self._unwatched_resync
        try:
            while not self._stopping.is_set():
                raw = self._inotify.read(timeout=200)
                if raw:
                    self.process(raw)
                now = time.monotonic()
                if now >= next_root_check:
                    next_root_check = now + ROOT_CHECK_SECONDS
                    self._deliver(self._check_roots())
                if now >= next_resync:
                    next_resync = now + self._unwatched_resync
                    self._deliver(self._resync_unwatched())
        except Exception:
            logger.exception("the watcher failed; changes are no longer seen")
            raise
        finally:
            self._inotify.close()

    def process(self, raw: list) -> None:
        """Turn one read of kernel events into Events and hand them to the sink, per root."""
        out: list[tuple[_Root, object]] = []
        moves: dict[int, _MoveFrom] = {}  # cookie -> a MOVED_FROM still waiting in `out`
        creates: dict[tuple[int, str], _Created] = {}  # new files waiting in `out`
        self._translate(raw, out, moves, creates)
        if moves:
            more = self._inotify.read(timeout=int(MOVE_PAIR_SECONDS * 1000))
            if more:
                self._translate(more, out, moves, creates)
        self._deliver(out)

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

    def _translate(self, raw: list, out: list, moves: dict, creates: dict) -> None:
        rules = self.rules
        for ev in raw:
            mask = ev.mask
            if mask & F.Q_OVERFLOW:
                self._overflow(out)
                continue
            where = self._by_wd.get(ev.wd)
            if where is None:
                continue  # a watch we dropped; its events are stale
            root, d = where
            if mask & F.IGNORED:
                if root.wds.get(d) == ev.wd:
                    del root.wds[d]
                self._by_wd.pop(ev.wd, None)
                continue
            if not ev.name:
                if mask & (F.DELETE_SELF | F.MOVE_SELF) and d == "":
                    self._root_lost(root, out, "was deleted or moved away")
                continue  # other events about a directory itself come from its parent too
            rel = f"{d}/{ev.name}" if d else ev.name
            is_dir = bool(mask & F.ISDIR)
            if not is_dir and rules.is_temp(ev.name):
                continue
            if not is_dir and mask & _ARRIVALS and rsync.is_temp_name(ev.name):
                # An rsync receiver's temporary file, renamed into place a moment later: its
                # content is never pushed; its going (the rename's source) still is, so that
                # a copy a directory push or a full sync made is deleted.
                continue
            if rules.is_excluded(rel, is_dir):
                continue
            if mask & F.MOVED_FROM:
                moves[ev.cookie] = _MoveFrom(rel, is_dir)
                out.append((root, moves[ev.cookie]))
            elif mask & F.MOVED_TO:
                self._moved_to(root, rel, is_dir, moves.pop(ev.cookie, None), out)
            elif mask & F.CREATE:
                if is_dir or rules.create_file:
                    self._created(root, rel, is_dir, out)
                else:
                    creates[(root.index, rel)] = created = _Created(rel)
                    out.append((root, created))
            elif mask & F.DELETE:
                if is_dir:
                    # rmdir needs an empty directory: nothing below it is still watched, so
                    # no scan of every watch per deleted directory (rm -rf of a large tree).
                    wd = root.wds.pop(rel, None)
                    if wd is not None:
                        self._by_wd.pop(wd, None)
                if rules.delete:
                    out.append((root, Event(DELETE, rel, is_dir)))
            elif mask & F.CLOSE_WRITE:
                if rules.close_write:
                    created = creates.pop((root.index, rel), None)
                    if created is not None:
                        created.closed = True
                    out.append((root, Event(UPDATE, rel, False)))
            elif mask & F.MODIFY:
                if rules.modify:
                    out.append((root, Event(UPDATE, rel, False)))
            elif mask & F.ATTRIB:
                if rules.attrib:
                    out.append((root, Event(UPDATE, rel, is_dir)))

    def _created(self, root: _Root, rel: str, is_dir: bool, out: list) -> None:
        if is_dir:
            # Watch first, then push the whole directory: whatever was written into it before
            # the watch existed is on disk when the push reads it.
            self._watch_tree(root, rel)
            out.append((root, Event(SUBTREE, rel, True)))
        else:
            out.append((root, Event(UPDATE, rel, False)))

    def _closes_later(self, root: _Root, rel: str) -> bool:
        """A new regular file gets a CLOSE_WRITE; a symlink, a hard link or a device does not,
        so sersync (createFile off) never pushed them. We do."""
        if not self.rules.close_write:
            return False
        try:
            st = os.lstat(self._abs(root, rel))
        except OSError:
            return True  # gone already; its DELETE follows
        return st.st_nlink == 1 and (st.st_mode & 0o170000) == 0o100000

    def _moved_to(self, root: _Root, rel: str, is_dir: bool, source: Optional[_MoveFrom],
                  out: list) -> None:
        rules = self.rules
        if source is not None:
            # A move inside the tree: the MOVED_FROM's place in the order gets the result.
            source.paired = True
            if is_dir:
                self._move_tree(root, source.rel, rel)
            if rules.move_from and rules.move_to:
                source.event = Event(RENAME, rel, is_dir, source.rel)
                return
            if rules.move_from:
                source.event = Event(DELETE, source.rel, is_dir)
        if is_dir:
            self._watch_tree(root, rel)
        if rules.move_to:
            out.append((root, Event(SUBTREE, rel, True) if is_dir else Event(UPDATE, rel, False)))

    def _moved_out(self, root: _Root, source: _MoveFrom) -> Optional[Event]:
        if source.is_dir:
            self._forget_tree(root, source.rel, remove=True)
        return Event(DELETE, source.rel, source.is_dir) if self.rules.move_from else None

    def _root_lost(self, root: _Root, out: list, why: str) -> None:
        """The root itself went: a DELETE of "" covers every pending change below it, and the
        lanes push nothing (no mass deletion) until the root is back."""
        if root.gone:
            return
        root.gone = True
        logger.error("the watch root %s %s: replication of it is paused until it is back",
                     root.path, why)
        self._forget_tree(root, "", remove=True)
        out.append((root, Event(DELETE, "", True)))

    def _check_roots(self) -> list:
        out: list = []
        now = time.monotonic()
        self._missed = {k: t for k, t in self._missed.items() if now - t <= MISSED_SECONDS}
        for root in self._roots:
            try:
                st = os.stat(root.path)
                present = stat.S_ISDIR(st.st_mode) and st.st_dev == root.dev
            except OSError:
                present = False
            if not present and not root.gone:
                self._root_lost(root, out, "is gone or was replaced by another mount")
            elif present and root.gone:
                root.gone = False
                logger.warning("the watch root %s is back: watching and resyncing it",
                               root.path)
                self._watch_tree(root, "")
                out.append((root, Event(FULL, "", True)))
        return out

    def _resync_unwatched(self) -> list:
        """Try the unwatched directories again; push those still unwatched whole. Try the
        unreadable ones again too, and push those that can be read now."""
        out: list = []
        for index, rel in sorted(self._unreadable):
            root = self._roots[index]
            if root.gone:
                continue
            self._watch_tree(root, rel)
            if rel in root.wds:  # readable now: watched, and sent whole
                self._unreadable.discard((index, rel))
                self.unreadable[index].readable([rel])
                out.append((root, Event(FULL, rel, True)))
            elif not os.path.isdir(self._abs(root, rel)):  # deleted or moved away
                self._unreadable.discard((index, rel))
                self.unreadable[index].readable([rel])
        if not self._unwatched:
            return out
        todo, self._unwatched = self._unwatched, set()
        for index, rel in sorted(todo):
            root = self._roots[index]
            if root.gone:
                continue
            self._watch_tree(root, rel)
            out.append((root, Event(FULL, rel, True)))
        if self._unwatched:
            self._warn_unwatched()
        return out

    def _warn_unwatched(self) -> None:
        logger.error("%d directories cannot be watched (the inotify watch limit is reached: "
                     "raise the sysctl fs.inotify.max_user_watches); they are resynced whole "
                     "every %.0f s instead", len(self._unwatched), self._unwatched_resync)

    def _overflow(self, out: list) -> None:
        """Events were lost: watch whatever is new and resync every root with the quick check."""
        self.overflows += 1
        logger.warning("inotify queue overflow: events were lost; rescanning and resyncing "
                       "every watch root (raise fs.inotify.max_queued_events to avoid this)")
        for root in self._roots:
            self._watch_tree(root, "")
            out.append((root, Event(FULL, "", True)))
