"""Which changes are pushed: sersync's <inotify> flags, <filter> regexes and dotfile rule
(Rules), applied to events by the watcher; and what those regexes leave out of what rsync sends
whole, as an exclude file (sersync added <crontabfilter> patterns to every push instead).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Optional

# rsync reads a pattern with one of these as a wildcard pattern, where "\" escapes; a
# pattern without any is matched as it is, backslashes included.
_WILDCARDS = re.compile(rb"[*?[]")
_ESCAPED = re.compile(rb"([*?[\\])")

Excluded = Callable[[str, bool], bool]  # (path below the root, is a directory) -> left out


def below_excluded(excluded: Excluded, rel: str) -> bool:
    """Whether directory `rel` or one above it is excluded by <filter>."""
    at = -1
    while True:
        at = rel.find("/", at + 1)
        if excluded(rel if at < 0 else rel[:at], True):
            return True
        if at < 0:
            return False


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


# rsync cannot apply a regex: below a directory it sends whole (moved in or new, a full sync),
# the paths the <filter> regexes leave out are found here and given to rsync as exact, anchored
# patterns (--exclude-from, NUL-separated under --from0).


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


def exclude_file(paths: list[str]) -> AbstractContextManager[Optional[str]]:
    """A private temporary file of NUL-separated patterns for `paths` (--exclude-from), for
    the rsync calls made while it is open; None when there is nothing to exclude."""
    return _rules_file([pattern(path) for path in paths])


def cleanup_file(raced: list[str], excluded: list[str]) -> AbstractContextManager[Optional[str]]:
    """Filter rules (--filter="merge FILE") for the push that takes back what a push sent whole
    carried though the <filter> regexes leave it out: a file created there between the walk
    that listed the exclusions and rsync's own (`raced`). Hidden on our side, so the
    receiver deletes its copy; the other excluded paths stay protected there, as always."""
    return _rules_file([b"H " + pattern(path) for path in raced]
                       + [b"- " + pattern(path) for path in excluded])


@contextmanager
def _rules_file(lines: list[bytes]) -> Iterator[Optional[str]]:
    if not lines:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="sersyncpy-exclude-")  # 0600, a name nobody guesses
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(b"".join(line + b"\0" for line in lines))
        yield name
    finally:
        os.unlink(name)
