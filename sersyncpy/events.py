"""The change record that flows from the watcher to the filter queue, and the kinds of change.

A path is always relative to its watch root ("" is the root itself) and is a str that may hold
any bytes (surrogateescape, as os.fsdecode gives); it becomes bytes only on rsync's stdin.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

# The kinds, ordered by how much of the tree a push of the path carries. The numbers are shared
# with the compiled queue (src/_filterqueue.pyx), so they must not change.
UPDATE = 1  # send this path as it is now (file content, symlink, or a directory's own metadata)
DELETE = 2  # the path went away: remove it on the remote (a directory with its content)
SUBTREE = 3  # a directory new to the remote (created, re-created, moved in): send all of it
RENAME = 4  # a directory renamed from `src`: send it against the old copy (--link-dest)
FULL = 5  # resync a directory with rsync's quick check (overflow, -r, a failed watch)

KIND_NAMES = {
    UPDATE: "update", DELETE: "delete", SUBTREE: "subtree", RENAME: "rename", FULL: "full",
}

# Kinds whose push carries every descendant, so pending changes below them are redundant.
COVERING = frozenset({SUBTREE, RENAME, FULL})


def is_clean(path: str) -> bool:
    """Whether `path` is relative, normalised and inside its root: no leading "/", no empty,
    "." or ".." component, no NUL ("" is the root). Only such paths ever reach rsync; the fail
    log, read back from disk, is checked against this before a line is replayed."""
    if not path:
        return True
    if "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


class Event(NamedTuple):
    """One change as the watcher reports it and as a batch carries it."""

    kind: int
    path: str
    is_dir: bool = False
    src: Optional[str] = None  # RENAME only: the old path

    def __str__(self) -> str:
        name = KIND_NAMES.get(self.kind, str(self.kind))
        if self.src is not None:
            return f"{name} {self.src!r} -> {self.path!r}"
        return f"{name} {self.path!r}{'/' if self.is_dir else ''}"
