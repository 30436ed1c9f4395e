"""What a path is on disk when its batch is planned, seen as rsync would meet it, and the paths
of a root that cannot be read. A tree writer may race any path: a directory replaced by a
symlink makes everything listed below it SHADOWED, never followed out of the tree.
"""

from __future__ import annotations

import enum
import logging
import os
import stat
import threading
import time
from collections.abc import Iterable
from typing import Callable, Optional

logger = logging.getLogger(__name__)

# An unreadable path is named once; beyond this many the rest are counted, not remembered.
UNREADABLE_REMEMBERED = 10000
UNREADABLE_NAMED = 20  # unreadable paths named one by one in the log


class State(str, enum.Enum):
    DIR = "dir"  # a real directory, below real directories
    OTHER = "other"  # a file, a symlink, a device
    MISSING = "missing"  # not there (a deletion to pass on)
    SHADOWED = "shadowed"  # an ancestor is no longer a real directory: gone with it
    UNREADABLE = "unreadable"  # there, but we may not read it, and rsync could not either


def _own_state(path: str) -> State:
    """The state of `path` itself, its parent being a real directory."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return State.MISSING
    except NotADirectoryError:
        return State.SHADOWED
    except PermissionError:  # a parent we may not search (mkdir -m 700 by another user)
        return State.UNREADABLE
    except OSError:
        return State.MISSING
    if stat.S_ISDIR(mode):
        return State.DIR if _may(path, os.R_OK | os.X_OK) else State.UNREADABLE
    if stat.S_ISREG(mode) and not _may(path, os.R_OK):
        return State.UNREADABLE
    return State.OTHER


def _may(path: str, mode: int) -> bool:
    # With our effective uid, as rsync's open() will be: a service user, or root on an NFS
    # root_squash mount, cannot read another user's 0700 directory.
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _ancestor_state(root: str, rel: str, cache: dict[str, State]) -> State:
    """DIR when `rel` and every directory between it and the root are real directories
    (readable or not), else MISSING or SHADOWED; `cache` keeps the verdict of each."""
    todo = []
    probe = rel
    while probe and probe not in cache:
        todo.append(probe)
        probe = probe.rpartition("/")[0]
    state = cache[probe] if probe else State.DIR
    for path in reversed(todo):
        if state is State.DIR:
            own = _own_state(os.path.join(root, path))
            # A file or a symlink in the middle of a path: rsync's open() would go through
            # it (a symlink to /root/.ssh, say). What was below it is gone with it.
            state = {State.OTHER: State.SHADOWED, State.UNREADABLE: State.DIR}.get(own, own)
        cache[path] = state
    return state


def disk_state(root: str, rel: str, cache: Optional[dict[str, State]] = None) -> State:
    """What `rel` (below `root`, "" the root) is now. Every ancestor below the root is checked
    with lstat, never followed: `cache`, shared by the paths of one batch, keeps the cost at
    one lstat per directory."""
    head = rel.rpartition("/")[0]
    if head:
        above = _ancestor_state(root, head, {} if cache is None else cache)
        if above is not State.DIR:
            return above
    return _own_state(os.path.join(root, rel) if rel else root)


class SharedStates:
    """The disk states of one root's paths, shared by its lanes, so that a path is looked up
    once per change rather than once per remote. An event on a path or on any directory
    above it (offered to `forget` before any lane sees it) makes what was known of it stale;
    so does age (TTL_SECONDS, short: a change whose event is not read yet, a permission
    changed with <attrib> off) and a failed push (`forget` again)."""

    # Short: the lanes of a root that push the same changes at about the same time share
    # what they find; an older answer could miss a change whose event the watcher has not
    # read yet (a parent removed while it was busy: the child's deletion is then its
    # parent's to carry, and a stale "still there" would push it and tell the plugins
    # before the remote had it).
    TTL_SECONDS = 0.05
    LIMIT = 100_000  # paths remembered; past it everything is forgotten at once

    def __init__(self, root: str, clock: Callable[[], float] = time.monotonic):
        self.root = root
        self._clock = clock
        self._known: dict[str, tuple[State, int, float]] = {}  # state, tick, when
        self._touched: dict[str, int] = {}  # path -> the tick of the last event on it
        self._tick = 0
        self._cleared = clock()
        self._lock = threading.Lock()

    def forget(self, paths: Iterable[str]) -> None:
        with self._lock:
            self._tick += 1
            now = self._clock()
            if now - self._cleared > self.TTL_SECONDS or len(self._touched) > self.LIMIT:
                # Nothing known is used past the TTL, so what was touched before is not
                # needed either: both go, and memory follows the last second's changes.
                self._cleared = now
                self._touched.clear()
                self._known.clear()
            for path in paths:
                self._touched[path] = self._tick

    def state(self, rel: str, batch: dict[str, State]) -> State:
        """disk_state(root, rel, batch), from what another lane found if still fresh."""
        now = self._clock()
        known = self._known.get(rel)
        if known is not None and now - known[2] < self.TTL_SECONDS and self._fresh(rel, known[1]):
            return known[0]
        tick = self._tick  # before the lstat: an event from now on makes it stale
        state = disk_state(self.root, rel, batch)
        if len(self._known) > self.LIMIT:
            self._known.clear()
        self._known[rel] = (state, tick, now)
        return state

    def _fresh(self, rel: str, tick: int) -> bool:
        """No event on `rel`, on a directory above it, or on the root, since `tick`."""
        touched = self._touched
        probe = rel
        while True:
            if touched.get(probe, 0) > tick:
                return False
            if not probe:
                return True
            probe = probe.rpartition("/")[0]


# A renamed directory this small goes whole in the batch's one rsync call: an rsync process
# of its own (--link-dest, to send no data) costs more than its data.
SMALL_TREE_FILES = 64
SMALL_TREE_BYTES = 1024 * 1024


def is_small_tree(directory: str) -> bool:
    """Whether `directory` holds at most SMALL_TREE_FILES entries and SMALL_TREE_BYTES of
    regular files, all the way down (symlinks not followed); stops counting past either."""
    entries, size, todo = 0, 0, [directory]
    while todo:
        try:
            with os.scandir(todo.pop()) as found:
                for entry in found:
                    entries += 1
                    if entries > SMALL_TREE_FILES:
                        return False
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        size += entry.stat(follow_symlinks=False).st_size
                        if size > SMALL_TREE_BYTES:
                            return False
        except OSError:
            continue  # rsync will meet what we cannot read
    return True


def root_present(path: str, dev: int) -> bool:
    """A watch root is where it was: a directory, on the device it was on when first watched
    (not deleted, moved away, or covered by another mount, such as a failed NFS mount's
    empty mount point). The watcher and every lane ask the same question."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_dev == dev


def is_empty(directory: str) -> bool:
    """Whether a directory has nothing in it; False when that cannot be told (rsync will):
    an empty root is more often a failed mount than a wish to delete everything."""
    try:
        with os.scandir(directory) as entries:
            return next(entries, None) is None
    except OSError:
        return False


class Unreadable:
    """The paths of one root that could not be read, shared by its watcher and its lanes:
    each is named once in the log (not once per remote, retry or directory watch), at most
    UNREADABLE_NAMED of them while any stay (another user could make thousands), and all
    are counted for the status."""

    def __init__(self, root: str):
        self.root = root
        self._paths: set[str] = set()
        self._uncounted = 0  # beyond UNREADABLE_REMEMBERED
        self._named = 0
        self._lock = threading.Lock()

    def report(self, paths: Iterable[str]) -> None:
        with self._lock:
            new = [p for p in paths if p not in self._paths]
            room = max(0, UNREADABLE_REMEMBERED - len(self._paths))
            self._paths.update(new[:room])
            self._uncounted += len(new) - len(new[:room])
            shown = new[:max(0, UNREADABLE_NAMED - self._named)]
            said_more = self._named <= UNREADABLE_NAMED < self._named + len(new)
            self._named += len(new)
        for path in shown:
            logger.warning("cannot read %s (permission denied): it is not replicated until "
                           "it can be read", os.path.join(self.root, path) if path else self.root)
        if said_more and len(new) > len(shown):
            logger.warning("more paths under %s cannot be read; the status file counts them",
                           self.root)

    def readable(self, paths: Iterable[str]) -> None:
        """These were pushed or watched: if they had been unreadable, they are no more."""
        with self._lock:
            if self._paths:
                self._paths.difference_update(paths)
                if not self._paths and not self._uncounted:
                    self._named = 0  # all readable again: name the next ones

    def count(self) -> int:
        with self._lock:
            return len(self._paths) + self._uncounted
