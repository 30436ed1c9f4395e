"""The mount table (/proc/self/mountinfo): the mount points below a path, and the mount that
holds one; what the fanotify watcher marks and reads handles back through."""

from __future__ import annotations

import os


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


def _mount_points() -> list[str]:
    """Every mount point of this process's namespace (/proc/self/mountinfo)."""
    points = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) > 4:
                    points.append(_unescape(fields[4]))
    except OSError:
        pass
    return points


def mounts_below(path: str) -> list[str]:
    """The mount points strictly below `path`."""
    prefix = path.rstrip("/") + "/"
    return [point for point in _mount_points() if point.startswith(prefix)]


def mount_point(path: str) -> str:
    """The mount point of the mount holding `path`: the longest one above it. (A bind mount
    of the same file system is one too, which os.path.ismount does not see; a handle opened
    through the outer mount would read back as the bind's source path.)"""
    best = "/"
    for point in _mount_points():
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    return best
