"""The mount table (/proc/self/mountinfo): the mount points below a path, the mount that
holds one, and whether the table changed; what the watchers follow, and what the fanotify
watcher marks and reads handles back through."""

from __future__ import annotations

import os
import select
from typing import BinaryIO, Optional


def _unescape(field: str) -> str:
    """A path of /proc/self/mountinfo, where space, tab, newline and backslash are octal."""
    if "\\" not in field:
        return field
    raw = os.fsencode(field)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i:i + 1] == b"\\" and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def mount_table() -> list[tuple[str, str]]:
    """Every mount of this process's namespace (/proc/self/mountinfo): (its mount ID, its
    mount point)."""
    mounts = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) > 4:
                    mounts.append((fields[0], _unescape(fields[4])))
    except OSError:
        pass
    return mounts


def mount_ids_below(path: str, table: Optional[list[tuple[str, str]]] = None,
                    ) -> list[tuple[str, str]]:
    """The mounts strictly below `path` as (mount ID, mount point), in the table's order: of
    mounts stacked on one point, the one on top (the one that shows) comes last."""
    prefix = path.rstrip("/") + "/"
    return [(id_, point) for id_, point in (mount_table() if table is None else table)
            if point.startswith(prefix)]


def mounts_below(path: str) -> list[str]:
    """The mount points strictly below `path`."""
    return [point for _id, point in mount_ids_below(path)]


def fd_mount_id(fd: int) -> str:
    """The mount ID of the mount an open fd is on (its /proc/self/fdinfo), "" if unknown."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
            for line in f:
                if line.startswith("mnt_id:"):
                    return line.split()[1]
    except OSError:
        pass
    return ""


def mount_point(path: str) -> str:
    """The mount point of the mount holding `path`: the longest one above it. (A bind mount
    of the same file system is one too, which os.path.ismount does not see; a handle opened
    through the outer mount would read back as the bind's source path.)"""
    best = "/"
    for _id, point in mount_table():
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    return best


class MountChanges:
    """Tells whether a mount or an unmount happened in this namespace since it last asked:
    /proc/self/mountinfo polls POLLPRI once after each change (proc(5)), no reading needed."""

    def __init__(self) -> None:
        self._poller = select.poll()
        try:
            self._file: Optional[BinaryIO] = open("/proc/self/mountinfo", "rb")  # noqa: SIM115
        except OSError:  # no /proc: mounts made later are not followed
            self._file = None
        else:
            self._poller.register(self._file.fileno(), select.POLLPRI)

    def changed(self) -> bool:
        return bool(self._poller.poll(0))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
