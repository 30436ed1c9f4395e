"""fanotify as the watcher's source: one mark per file system instead of one inotify watch per
directory, directory handles opened back to paths (a bounded cache, cleared when a directory
moves), events outside the roots dropped as they are read. The watcher (watcher.py) reads it.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from typing import Optional

from sersyncpy.diskstate import Unreadable
from sersyncpy.mounts import fd_mount_id, mount_point, mounts_below
from sersyncpy.rules import Excluded, below_excluded
from sersyncpy.watchtable import Root

logger = logging.getLogger(__name__)

# The kernel's event bits (the same values as inotify's IN_*, which the watcher reads).
MODIFY, ATTRIB, CLOSE_WRITE = 0x2, 0x4, 0x8
MOVED_FROM, MOVED_TO, CREATE, DELETE = 0x40, 0x80, 0x100, 0x200
DELETE_SELF, MOVE_SELF, Q_OVERFLOW = 0x400, 0x800, 0x4000
RENAME, ONDIR = 0x10000000, 0x40000000

# File systems whose changes are made elsewhere too (another client of the server): only the
# changes made on this host would be seen, as with inotify, but their file handles are the
# server's to give; inotify is kept for them (statfs f_type values).
NETWORK_FS = {
    0x6969: "nfs", 0xFF534D42: "cifs", 0xFE534D42: "smb2", 0x517B: "smb",
    0x65735546: "fuse", 0x00C36400: "ceph", 0x01021997: "9p", 0x5346414F: "afs",
    0x47504653: "gpfs", 0x0BD00BD0: "lustre", 0x013111A8: "ibrix",
}
# Where any local user may write, on most systems. A fanotify mark covers a whole file system:
# a root sharing one with these would have its watcher read every change another user makes
# there (~3 us each), and a flood of them overflow its queue, each overflow a full resync of
# every root. auto keeps inotify for such roots; <watcher use="fanotify"> takes the risk.
SHARED_PLACES = ("/tmp", "/var/tmp", "/dev/shm", "/home")

# Directory handles kept resolved, inside the roots and outside them (each ~250 B).
CACHE_ENTRIES = 65536
# One read: ~1,000 events of short names.
READ_BYTES = 64 * 1024


class Unavailable(Exception):
    """fanotify cannot watch these roots; the message says why (one line)."""


def _compiled():
    try:
        from sersyncpy import _fanotify
    except ImportError as exc:
        raise Unavailable(f"the compiled fanotify module is missing ({exc})") from None
    return _fanotify


# Capabilities (linux/capability.h): a filesystem mark needs CAP_SYS_ADMIN, opening a
# directory by its handle CAP_DAC_READ_SEARCH.
CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN = 2, 21


def _capable() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return all(caps >> cap & 1 for cap in (CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN))
    except (OSError, ValueError):
        pass
    return False


def _group(fan, flags: int):
    if not _capable():
        raise Unavailable("it needs root (CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH)")
    try:
        return fan.Group(fan.FAN_CLOEXEC | fan.FAN_NONBLOCK | fan.FAN_REPORT_DFID_NAME | flags)
    except OSError as exc:
        if exc.errno == errno.EPERM:
            raise Unavailable("it needs root (CAP_SYS_ADMIN)") from None
        if exc.errno == errno.EINVAL:
            raise Unavailable("the kernel is older than Linux 5.9 (no FAN_REPORT_DFID_NAME)"
                              ) from None
        if exc.errno == errno.ENOSYS:
            raise Unavailable("the kernel has no fanotify") from None
        raise Unavailable(f"fanotify_init failed: {exc.strerror}") from None


def probe() -> Optional[str]:
    """Why no fanotify watcher can run here at all (None: one can, roots permitting)."""
    try:
        _group(_compiled(), 0).close()
    except Unavailable as exc:
        return str(exc)
    return None


def shared_with_users(roots: Sequence[str]) -> Optional[str]:
    """Why a root's file system is one that other local users write to (SHARED_PLACES), or
    None when no root's is."""
    fan = _compiled()
    places = {}
    for place in SHARED_PLACES:
        try:
            places.setdefault(fan.fs_info(os.fsencode(place))[1], place)
        except OSError:
            continue  # not on this system
    for root in roots:
        try:
            fsid = fan.fs_info(os.fsencode(root))[1]
        except OSError:
            continue
        if fsid in places:
            return (f"{root} is on the file system of {places[fsid]}, where other local users "
                    "write: fanotify would read every change they make there (and a flood of "
                    "them would overflow it and resync every root)")
    return None


class FanotifySource:
    """The watcher's source under fanotify: read() gives (mask, Root, rel dir, name, cookie)
    per change, in order, like the inotify table's; there are no watches to keep."""

    kind = "fanotify"
    pairs_later = False  # a rename is one event: nothing to wait for

    def __init__(self, roots: Sequence[str], modify: bool, excluded: Excluded,
                 unreadable: list[Unreadable], rename: bool = True,
                 unwatched_resync: float = 60.0):
        fan = _compiled()
        self._fan = fan
        self.roots = [Root(i, os.path.realpath(p)) for i, p in enumerate(roots)]
        self._excluded = excluded
        self.unreadable = unreadable
        self.on_progress = None
        self._mounts: dict[bytes, int] = {}  # fsid -> an fd of a directory on it
        self._held: set[str] = set()  # the mount IDs of those fds: the mounts marked
        # (root index, rel) of file systems mounted below a root after the start: not marked
        # (see mount_changed), resynced whole every unwatched-resync period instead.
        self._unmarked: set[tuple[int, str]] = set()
        self._resync_every = unwatched_resync
        self._root_keys: dict[bytes, Root] = {}  # each root's own handle: its self events
        self._inside: dict[bytes, tuple[tuple[Root, str], ...]] = {}
        self._outside: set[bytes] = set()
        self._cookie = 0
        self._too_long = False  # this read met a directory whose path cannot be read back
        self._group = _group(fan, 0)
        try:
            self._rename = rename and self._try_rename()
            self._mark_all(modify)
        except BaseException:
            self.close()
            raise

    def _try_rename(self) -> bool:
        """Whether the kernel gives FAN_RENAME (Linux 5.17): one event, both names."""
        fan = self._fan
        probe = self._fan.Group(fan.FAN_CLOEXEC | fan.FAN_NONBLOCK | fan.FAN_REPORT_DFID_NAME)
        try:
            probe.mark(os.fsencode(self.roots[0].path), fan.FAN_MARK_ADD | fan.FAN_MARK_ONLYDIR,
                       RENAME | ONDIR)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def _mark_all(self, modify: bool) -> None:
        fan = self._fan
        mask = CREATE | DELETE | CLOSE_WRITE | ATTRIB | ONDIR | (MODIFY if modify else 0)
        mask |= RENAME if self._rename else MOVED_FROM | MOVED_TO
        marked: dict[bytes, str] = {}  # fsid -> the first path marked on it
        for root in self.roots:
            if not os.path.isdir(root.path):
                raise Unavailable(f"{root.path} is not a directory")
            for path in [root.path, *mounts_below(root.path)]:
                ftype, fsid = fan.fs_info(os.fsencode(path))
                if ftype in NETWORK_FS:
                    raise Unavailable(f"{path} is on {NETWORK_FS[ftype]}: inotify is used for "
                                      "network file systems")
                if fsid in marked:
                    if path != root.path and marked[fsid] != path:
                        raise Unavailable(f"{path} is a second mount of the file system of "
                                          f"{marked[fsid]} (a bind mount)")
                    continue
                if fsid == bytes(8):
                    raise Unavailable(f"the file system of {path} has no fsid")
                if fan.handle_key(os.fsencode(path), fsid) is None:
                    raise Unavailable(f"the file system of {path} gives no file handles")
                try:
                    self._group.mark(os.fsencode(path),
                                     fan.FAN_MARK_ADD | fan.FAN_MARK_FILESYSTEM, mask)
                except OSError as exc:
                    raise Unavailable(f"cannot mark the file system of {path}: "
                                      f"{exc.strerror}") from None
                marked[fsid] = path
                # Handles are opened through the mount point: an fd on the root itself would
                # hold its dentry, and its DELETE_SELF would wait for that fd's close.
                self._mounts[fsid] = os.open(mount_point(path),
                                             os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._held.add(fd_mount_id(self._mounts[fsid]))
            root.dev = os.stat(root.path).st_dev
            self._mark_root(root)

    def _mark_root(self, root: Root) -> None:
        """The root's own going: DELETE_SELF / MOVE_SELF, told at once (the watcher's root
        check sees it within a second too); and its handle, which then names it."""
        fan = self._fan
        path = os.fsencode(root.path)
        self._group.mark(path, fan.FAN_MARK_ADD | fan.FAN_MARK_ONLYDIR,
                         DELETE_SELF | MOVE_SELF | ONDIR)
        key = fan.handle_key(path, fan.fs_info(path)[1])
        if key is not None:
            self._root_keys[key] = root

    # -- what the watcher asks of any source -------------------------------------------

    @property
    def excluded(self) -> Excluded:
        """The <filter> regexes: a directory they exclude is, with all below it, outside
        (as inotify does not watch it). Replaced on reload, which clears the cache."""
        return self._excluded

    @excluded.setter
    def excluded(self, excluded: Excluded) -> None:
        self._excluded = excluded
        self._forget()

    def fileno(self) -> int:
        return self._group.fileno()

    def close(self) -> None:
        self._group.close()
        for fd in self._mounts.values():
            os.close(fd)
        self._mounts.clear()

    def describe(self) -> str:
        moves = "FAN_RENAME" if self._rename else "moves unpaired (no FAN_RENAME)"
        return f"fanotify ({len(self._mounts)} file system mark(s), {moves})"

    def watch_all(self) -> int:
        """Nothing to set up: the marks are in place. Returns 0 directories watched."""
        for root in self.roots:
            root.gone = False
        return 0

    @property
    def watch_count(self) -> int:
        return 0

    def counts(self) -> list[tuple[int, int]]:
        """Per root: (0 watches, file systems mounted below it after the start, unmarked)."""
        unmarked = list(self._unmarked)  # read by the status and metrics threads too
        return [(0, sum(1 for index, _ in unmarked if index == root.index))
                for root in self.roots]

    def path(self, root: Root, rel: str) -> str:
        return os.path.join(root.path, rel) if rel else root.path

    # No watches to add, move or drop; the cache is this source's own business (read()).
    def dir_created(self, root: Root, rel: str) -> None:
        pass

    def dir_deleted(self, root: Root, rel: str) -> None:
        pass

    def dir_moved(self, root: Root, src: str, dst: str) -> None:
        pass

    def dir_moved_out(self, root: Root, rel: str) -> None:
        pass

    def root_lost(self, root: Root) -> None:
        self._forget()

    def root_back(self, root: Root) -> None:
        self._forget()
        try:
            self._mark_root(root)  # a new directory: the old one's mark went with it
        except OSError as exc:
            logger.warning("fanotify: cannot mark the watch root %s again: %s (its deletion "
                           "is then seen by the check every second)", root.path, exc.strerror)

    def overflowed(self, root: Root) -> None:
        pass

    def expire_missed(self) -> None:
        pass

    def retry(self) -> list[tuple[Root, str]]:
        """The file systems mounted after the start, to resync whole (every unwatched-resync
        period, as inotify's unwatched directories are)."""
        return [(self.roots[index], rel) for index, rel in sorted(self._unmarked)]

    def mount_changed(self, root: Root, rel: str, mount_id: Optional[str]) -> None:
        """`mount_id` shows on `rel` now (None: no mount). One marked at the start is
        followed. Another is not marked: its mount point is a path a tree writer may swap for
        a symlink before the mark (marking /home's file system), and a mark held through an
        fd would keep it from being unmounted. It is resynced whole every unwatched-resync
        period, and counted as unwatched, until it is unmounted or sersyncpy restarts."""
        self._forget()  # the paths of handles read back through that place change
        if mount_id is None or mount_id in self._held:
            self._unmarked.discard((root.index, rel))
            return
        self._unmarked.add((root.index, rel))
        logger.error("fanotify does not follow a file system mounted after the start: %s is "
                     "resynced whole every %.0f s; restart sersyncpy to watch it",
                     self.path(root, rel), self._resync_every)

    # -- reading -------------------------------------------------------------------------

    def read(self, size: int = READ_BYTES) -> list[tuple]:
        """The changes in one read of the kernel's queue: (mask, Root, rel dir, name, cookie);
        an overflow is (Q_OVERFLOW, None, "", "", 0)."""
        out: list[tuple] = []
        self._too_long = False
        # The reader drops, for the whole read, the events of directories cached as outside.
        # One that moves in during the read loses its later events of that read only: its
        # move in is a SUBTREE, pushed after this read, which carries what they were about.
        for mask, key, name, key2, name2 in self._group.read(size, self._outside):
            if mask & Q_OVERFLOW:
                out.append((Q_OVERFLOW, None, "", "", 0))
            elif mask & RENAME:
                self._renamed(out, mask & ONDIR, key, name, key2, name2)
            elif mask & (DELETE_SELF | MOVE_SELF):
                root = self._root_keys.get(key)
                if root is not None:
                    out.append((mask, root, "", "", 0))
            else:
                places = self._places(key)
                if places:
                    self._changed(out, mask, places, name)
        if self._too_long:
            # A directory whose path is too long to be read back: where its change was is
            # unknown, so, as when events are lost, every root is resynced.
            logger.warning("fanotify: a changed directory's path is longer than PATH_MAX; "
                           "resyncing every watch root")
            out.append((Q_OVERFLOW, None, "", "", 0))
        return out

    def _changed(self, out: list, mask: int, places: tuple, raw_name: bytes) -> None:
        is_dir = mask & ONDIR
        if raw_name == b".":  # an event on a directory itself: told as its parent's entry
            for root, d in places:
                if d:
                    parent, _, name = d.rpartition("/")
                    out.append((mask & (ATTRIB | MODIFY) | is_dir, root, parent, name, 0))
            return
        if is_dir and mask & MOVED_FROM:
            self._forget()  # unpaired moves (no FAN_RENAME): a directory below moved
        if is_dir and mask & MOVED_TO:
            self._outside.clear()
        name = os.fsdecode(raw_name)
        for root, d in places:
            for bit in self._order(mask, root, d, name):
                cookie = 0
                if bit & (MOVED_FROM | MOVED_TO):
                    self._cookie += 1  # never paired: each its own cookie
                    cookie = self._cookie
                out.append((bit | is_dir, root, d, name, cookie))

    def _order(self, mask: int, root: Root, d: str, name: str) -> list[int]:
        """The kernel merges the events of one name that follow each other unread (rm f;
        touch f is CREATE|DELETE): the disk says which came last."""
        goes = [b for b in (MOVED_FROM, DELETE) if mask & b]
        comes = [b for b in (CREATE, MOVED_TO, MODIFY, ATTRIB, CLOSE_WRITE) if mask & b]
        if goes and comes:
            rel = f"{d}/{name}" if d else name
            if not os.path.lexists(self.path(root, rel)):
                return comes + goes
        return goes + comes

    def _renamed(self, out: list, is_dir: int, key: Optional[bytes], name: bytes,
                 key2: Optional[bytes], name2: bytes) -> None:
        old = self._places(key) if key is not None else None
        new = self._places(key2) if key2 is not None else None
        if is_dir:
            if old:
                self._forget()  # every path cached below the old name is stale
            elif new:
                self._outside.clear()  # moved in: what was cached as outside may be inside
        self._cookie += 1
        cookie = self._cookie
        for root, d in old or ():
            out.append((MOVED_FROM | is_dir, root, d, os.fsdecode(name), cookie))
        for root, d in new or ():
            # A move between two roots is a deletion in one and an arrival in the other.
            paired = old is not None and any(r is root for r, _ in old)
            if not paired:
                self._cookie += 1
            out.append((MOVED_TO | is_dir, root, d, os.fsdecode(name2),
                        cookie if paired else self._cookie))

    # -- directory handles to paths -------------------------------------------------------

    def _places(self, key: bytes) -> Optional[tuple[tuple[Root, str], ...]]:
        """Where the directory of handle `key` is in the roots ((Root, rel dir) for each root
        holding it; usually one); None or () when outside every root or gone."""
        places = self._inside.get(key)
        if places is not None or key in self._outside:
            return places
        root = self._root_keys.get(key)
        if root is not None:
            places = ((root, ""),)
        else:
            places = self._resolve(key)
        if places is None:
            return ()  # unknown (too long to read back): not cached as outside
        if places:
            if len(self._inside) >= CACHE_ENTRIES:
                self._inside.clear()
            self._inside[key] = places
        else:
            if len(self._outside) >= CACHE_ENTRIES:
                self._outside.clear()
            self._outside.add(key)
        return places

    def _resolve(self, key: bytes) -> Optional[tuple[tuple[Root, str], ...]]:
        mount = self._mounts.get(key[:8])
        if mount is None:
            return ()
        try:
            raw = self._fan.resolve(mount, key)
        except OSError:  # ENAMETOOLONG: a path of 4096 bytes or more
            self._too_long = True
            return None
        if raw is None:
            return ()  # gone: what happened below it is told by its own deletion
        path = os.fsdecode(raw)
        found = []
        for root in self.roots:
            if path == root.path:
                found.append((root, ""))
            elif path.startswith(root.path.rstrip("/") + "/"):
                rel = path[len(root.path.rstrip("/")) + 1:]
                if not below_excluded(self._excluded, rel):
                    found.append((root, rel))
        return tuple(found)

    def _forget(self) -> None:
        self._inside.clear()
        self._outside.clear()
