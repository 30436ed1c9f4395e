"""The <filter> regexes for what rsync sends whole (a directory moved in or new, a full sync):
rsync cannot apply a regex, so the paths below such a directory that the regexes leave out
are found here and given to rsync as exact, anchored patterns (--exclude-from, NUL-separated
under --from0). sersync instead added <crontabfilter> patterns to every push.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Optional

# rsync reads a pattern with one of these as a wildcard pattern, where "\" escapes; a
# pattern without any is matched as it is, backslashes included.
_WILDCARDS = re.compile(rb"[*?[]")
_ESCAPED = re.compile(rb"([*?[\\])")

Excluded = Callable[[str, bool], bool]  # (path below the root, is a directory) -> left out


def excluded_below(root: str, tops: Iterable[str], excluded: Excluded) -> list[str]:
    """The paths below each of `tops` (directories below `root`, "" the root itself) that
    `excluded` leaves out; an excluded directory is not entered, nor is a symlink."""
    found: list[str] = []
    stack = list(dict.fromkeys(tops))
    while stack:
        top = stack.pop()
        try:
            with os.scandir(os.path.join(root, top) if top else root) as entries:
                for entry in entries:
                    rel = f"{top}/{entry.name}" if top else entry.name
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if excluded(rel, is_dir):
                        found.append(rel)
                    elif is_dir:
                        stack.append(rel)
        except OSError:
            continue  # gone, or unreadable: rsync meets the same, and says so
    return found


def pattern(rel: str) -> bytes:
    """An rsync pattern matching exactly `rel`, anchored at the transfer's root."""
    raw = os.fsencode(rel)
    if _WILDCARDS.search(raw):
        raw = _ESCAPED.sub(rb"\\\1", raw)
    return b"/" + raw


@contextmanager
def exclude_file(paths: list[str]) -> Iterator[Optional[str]]:
    """A private temporary file of NUL-separated patterns for `paths`, for the rsync calls
    made while it is open; None when there is nothing to exclude."""
    if not paths:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="sersyncpy-exclude-")  # 0600, a name nobody guesses
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(b"".join(pattern(path) + b"\0" for path in paths))
        yield name
    finally:
        os.unlink(name)
