"""The inotify watches of every watch root: which directory each watch descriptor stands for,
and the directories not watched (the watch limit, no permission, gone before their watch) with
their retries; the watcher's source under inotify. What the events mean is watcher.py's.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from inotify_simple import INotify, parse_events
from inotify_simple import flags as F

from sersyncpy import limits
from sersyncpy.diskstate import Unreadable
from sersyncpy.errors import SersyncpyError
from sersyncpy.rules import Excluded

logger = logging.getLogger(__name__)

# What the watcher always needs to stay correct, whatever <inotify> says is pushed.
BASE_MASK = (
    F.CREATE | F.DELETE | F.MOVED_FROM | F.MOVED_TO | F.CLOSE_WRITE | F.ATTRIB
    | F.DELETE_SELF | F.MOVE_SELF | F.DONT_FOLLOW | F.EXCL_UNLINK | F.ONLYDIR
)

# How long a directory that vanished before it could be watched is remembered, in case the
# rename that moved it is still to be read.
MISSED_SECONDS = 5.0


def inotify_instance(raise_limits: bool) -> INotify:
    """An inotify instance; when the user has all the instances the kernel allows, the
    sysctl to raise (raised with --raise-inotify-limits)."""
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


@dataclass
class Root:
    """A watch root: its watches by directory, and what says it is still there (watcher.py
    checks that)."""

    index: int
    path: str
    wds: dict[str, int] = field(default_factory=dict)  # rel dir -> wd
    dev: int = 0  # st_dev when first watched: another value means another mount
    gone: bool = False


def _same_directory(a: str, b: str) -> bool:
    """Whether two paths show the same directory now (not one moved from a to b)."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


class WatchTable:
    """wd <-> (root, rel dir) for every watched directory; only the watcher's thread (and
    watch_all before it starts) changes it."""

    kind = "inotify"
    pairs_later = True  # a MOVED_TO may come in the read after its MOVED_FROM

    def __init__(
        self, inotify: INotify, roots: Sequence[str], mask: int, excluded: Excluded,
        unreadable: list[Unreadable], unwatched_resync: float, raise_limits: bool,
    ):
        self._inotify = inotify
        self._mask = mask
        # The <filter> regexes (Rules.is_excluded): an excluded directory is not watched.
        # Watcher.use_rules replaces it on reload.
        self.excluded = excluded
        # The real path: a root that is a symlink (/var/www -> /data/www) must be followed,
        # while every watch below it uses IN_DONT_FOLLOW.
        self.roots = [Root(i, os.path.realpath(p)) for i, p in enumerate(roots)]
        self._by_wd: dict[int, tuple[Root, str]] = {}
        self._unwatched: set[tuple[int, str]] = set()  # (root index, rel dir) not watched
        # (root index, rel dir) showing a directory watched elsewhere (a bind mount): not
        # watched (see _watch_one); resynced whole and tried again each period.
        self._unfollowed: set[tuple[int, str]] = set()
        self._told: set[tuple[int, str]] = set()  # those of them logged already
        # (root index, rel dir) we may not read (mkdir -m 700 by another user, when we are
        # not root or the tree is root_squash NFS): not watched, not pushed, tried again;
        # named and counted by the root's Unreadable, which its lanes share.
        self._unreadable: set[tuple[int, str]] = set()
        self.unreadable = unreadable
        # (root index, rel dir) -> when: gone (ENOENT) as we tried to watch it; perhaps
        # renamed by an event not read yet (mkdir -p a/b && mv a c).
        self._missed: dict[tuple[int, str], float] = {}
        self._unwatched_resync = unwatched_resync
        self.raise_limits = raise_limits
        self.on_progress: Optional[Callable[[int], None]] = None  # directories watched so far
        self._progress_count = 0

    def fileno(self) -> int:
        return self._inotify.fileno()

    def close(self) -> None:
        self._inotify.close()

    def describe(self) -> str:
        return "inotify (a watch per directory)"

    def read(self, size: int) -> list[tuple]:
        """The events of one read of at most `size` bytes: (mask, Root, rel dir, name,
        cookie), or (Q_OVERFLOW, None, "", "", 0); those of watches dropped are left out."""
        out: list[tuple] = []
        for ev in parse_events(os.read(self._inotify.fileno(), size)):
            if ev.mask & F.Q_OVERFLOW:
                out.append((F.Q_OVERFLOW, None, "", "", 0))
                continue
            where = self._by_wd.get(ev.wd)
            if where is None:
                continue  # a watch we dropped; its events are stale
            if ev.mask & F.IGNORED:
                self.ignored(ev.wd)
            else:
                out.append((ev.mask, where[0], where[1], ev.name, ev.cookie))
        return out

    # What the watcher's events call for.
    def dir_created(self, root: Root, rel: str) -> None:
        self.watch_tree(root, rel)

    def dir_deleted(self, root: Root, rel: str) -> None:
        self.forget_dir(root, rel)

    def dir_moved(self, root: Root, src: str, dst: str) -> None:
        self.move_tree(root, src, dst)

    def dir_moved_out(self, root: Root, rel: str) -> None:
        self.forget_tree(root, rel, remove=True)

    def root_lost(self, root: Root) -> None:
        self.forget_tree(root, "", remove=True)

    def mount_changed(self, root: Root, rel: str, mount_id: Optional[str]) -> None:
        """`mount_id` shows on `rel` now (None: no mount): watch what shows there instead of
        what showed (a second mount of a watched directory is left unwatched by
        _watch_one)."""
        self._unfollowed.discard((root.index, rel))
        self.forget_tree(root, rel, remove=True)
        self.watch_tree(root, rel)

    def root_back(self, root: Root) -> None:
        self.watch_tree(root, "")

    def overflowed(self, root: Root) -> None:
        if not root.gone:
            # The IN_IGNOREDs of directories deleted meanwhile may be among the lost events:
            # rebuild the root's table from the disk, not on top of the old one (which grew
            # by every deleted directory, 69k entries in 30 s of stress-ng).
            self.forget_tree(root, "", remove=False)
        self.watch_tree(root, "")

    def counts(self) -> list[tuple[int, int]]:
        """Per root: (directories watched, directories that could not be watched)."""
        unwatched = [0] * len(self.roots)
        for index, _rel in list(self._unwatched) + list(self._unfollowed):
            unwatched[index] += 1
        return [(len(root.wds), unwatched[root.index]) for root in self.roots]

    def watch_all(self) -> int:
        """Add watches on every directory of every root; returns how many are watched."""
        self._progress_count = 0
        for root in self.roots:
            root.dev = os.stat(root.path).st_dev
            self.watch_tree(root, "")
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
                    self.watch_tree(self.roots[index], rel)
            if self._unwatched:
                self._warn_unwatched()
        return len(self._by_wd)

    def _count_unwatched(self) -> int:
        """Directories in the unwatched subtrees (not scanned when their top failed)."""
        count = 0
        for index, rel in self._unwatched:
            top = self.path(self.roots[index], rel)
            for _dirpath, dirnames, _files in os.walk(top):
                count += 1
                dirnames[:] = [d for d in dirnames
                               if not os.path.islink(os.path.join(_dirpath, d))]
        return count

    @property
    def watch_count(self) -> int:
        return len(self._by_wd)

    def path(self, root: Root, rel: str) -> str:
        return os.path.join(root.path, rel) if rel else root.path

    def where(self, wd: int) -> Optional[tuple[Root, str]]:
        """The root and directory of a watch; None for one we dropped (its events are stale)."""
        return self._by_wd.get(wd)

    def _watch_one(self, root: Root, rel: str) -> bool:
        try:
            wd = self._inotify.add_watch(self.path(root, rel), self._mask)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                # Deleted (its parent reports it) or renamed: move_tree retries it there.
                self._missed[(root.index, rel)] = time.monotonic()
                return False
            if exc.errno in (errno.EACCES, errno.EPERM):
                self._cannot_read(root, rel)
                return False
            if exc.errno != errno.ENOSPC:
                logger.error("cannot watch %s: %s", self.path(root, rel), exc.strerror)
            # Not watched, so not silently missed: resynced whole until it can be watched.
            self._unwatched.add((root.index, rel))
            return False
        self._progress_count += 1
        if self.on_progress is not None and not self._progress_count & 4095:
            self.on_progress(self._progress_count)
        old = self._by_wd.get(wd)
        if old is not None and old[1] != rel:
            if old[0] is root and _same_directory(self.path(root, old[1]), self.path(root, rel)):
                # One directory shown at two places (a bind mount): it keeps its watch where
                # it was; this place is resynced whole every period instead.
                self._unfollowed.add((root.index, rel))
                if (root.index, rel) not in self._told:
                    self._told.add((root.index, rel))
                    logger.error("%s shows %s, which is watched (a bind mount): it is not "
                                 "watched, and is resynced whole every %.0f s",
                                 self.path(root, rel), self.path(root, old[1]),
                                 self._unwatched_resync)
                return False
            if old[0].wds.get(old[1]) == wd:
                del old[0].wds[old[1]]
        self._by_wd[wd] = (root, rel)
        root.wds[rel] = wd
        if self._unfollowed:
            self._unfollowed.discard((root.index, rel))
        return True

    def _cannot_read(self, root: Root, rel: str) -> None:
        """A directory we may not read: named and counted (Unreadable), not pushed (rsync
        could not read it either), and tried again every unwatched-resync period."""
        self._unreadable.add((root.index, rel))
        self.unreadable[root.index].report([rel])

    def watch_tree(self, root: Root, rel: str) -> None:
        """Watch `rel` and every directory below it: each watch first, then its listing, so
        nothing created meanwhile is missed."""
        stack = [rel]
        while stack:
            d = stack.pop()
            if not self._watch_one(root, d):
                continue
            try:
                with os.scandir(self.path(root, d)) as it:
                    for entry in it:
                        # scandir falls back to lstat where d_type is unknown (old XFS), which
                        # is what sersync's <fileSystem xfs="true"> was for.
                        if entry.is_dir(follow_symlinks=False):
                            sub = f"{d}/{entry.name}" if d else entry.name
                            if not self.excluded(sub, True):
                                stack.append(sub)
            except OSError:
                continue

    def forget_tree(self, root: Root, rel: str, remove: bool) -> None:
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

    def forget_dir(self, root: Root, rel: str) -> None:
        """Drop the watch of a deleted directory: rmdir needs an empty one, so nothing below
        it is still watched, and no scan of every watch per deleted directory (rm -rf of a
        large tree)."""
        wd = root.wds.pop(rel, None)
        if wd is not None:
            self._by_wd.pop(wd, None)

    def ignored(self, wd: int) -> None:
        """The kernel dropped a watch (IN_IGNORED: its directory deleted or unmounted)."""
        where = self._by_wd.pop(wd, None)
        if where is not None and where[0].wds.get(where[1]) == wd:
            del where[0].wds[where[1]]

    def move_tree(self, root: Root, src: str, dst: str) -> None:
        """A directory moved inside the root keeps its watches; only their paths change.
        What could not be watched below it because it had moved already is watched now."""
        prefix = src + "/"
        for d in [d for d in root.wds if d == src or d.startswith(prefix)]:
            wd = root.wds.pop(d)
            new = dst + d[len(src):]
            root.wds[new] = wd
            self._by_wd[wd] = (root, new)
        for index, rel in [u for u in self._unfollowed
                           if u[0] == root.index and (u[1] == src or u[1].startswith(prefix))]:
            self._unfollowed.discard((index, rel))
            self._unfollowed.add((index, dst + rel[len(src):]))
        if self._missed:
            now = time.monotonic()
            for key, when in list(self._missed.items()):
                index, rel = key
                if now - when > MISSED_SECONDS:
                    del self._missed[key]
                elif index == root.index and (rel == src or rel.startswith(prefix)):
                    del self._missed[key]
                    self.watch_tree(root, dst + rel[len(src):])

    def expire_missed(self) -> None:
        now = time.monotonic()
        self._missed = {k: t for k, t in self._missed.items() if now - t <= MISSED_SECONDS}

    def retry(self) -> list[tuple[Root, str]]:
        """Try the unwatched directories again, and the unreadable ones; returns those to push
        whole: the unwatched whether they are watched now or not, the unreadable once they
        can be read, and the places showing a directory watched elsewhere (a bind mount),
        watched once that other place is gone."""
        out: list[tuple[Root, str]] = []
        todo, self._unfollowed = self._unfollowed, set()
        for index, rel in sorted(todo):
            root = self.roots[index]
            if root.gone:
                self._unfollowed.add((index, rel))
            elif os.path.isdir(self.path(root, rel)):
                self.watch_tree(root, rel)  # watched once the other place is gone
                out.append((root, rel))
        self._told &= self._unfollowed
        for index, rel in sorted(self._unreadable):
            root = self.roots[index]
            if root.gone:
                continue
            self.watch_tree(root, rel)
            if rel in root.wds:  # readable now: watched, and sent whole
                self._unreadable.discard((index, rel))
                self.unreadable[index].readable([rel])
                out.append((root, rel))
            elif not os.path.isdir(self.path(root, rel)):  # deleted or moved away
                self._unreadable.discard((index, rel))
                self.unreadable[index].readable([rel])
        if not self._unwatched:
            return out
        todo, self._unwatched = self._unwatched, set()
        for index, rel in sorted(todo):
            root = self.roots[index]
            if root.gone:
                continue
            self.watch_tree(root, rel)
            out.append((root, rel))
        if self._unwatched:
            self._warn_unwatched()
        return out

    def _warn_unwatched(self) -> None:
        logger.error("%d directories cannot be watched (the inotify watch limit is reached: "
                     "raise the sysctl fs.inotify.max_user_watches); they are resynced whole "
                     "every %.0f s instead", len(self._unwatched), self._unwatched_resync)
