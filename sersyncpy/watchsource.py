"""The watcher's source: what any source gives the watcher (Source), and which one a run
reads, inotify (watchtable.py) or fanotify (fanwatch.py), and why (choose_source).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Optional, Protocol

from inotify_simple import flags as F

from sersyncpy import fanwatch
from sersyncpy.diskstate import Unreadable
from sersyncpy.errors import SersyncpyError
from sersyncpy.rules import Excluded, Rules
from sersyncpy.watchtable import BASE_MASK, Root, WatchTable, inotify_instance

# Which watcher (config.WATCHERS: <watcher use> or SERSYNCPY_WATCHER).
AUTO, INOTIFY, FANOTIFY = "auto", "inotify", "fanotify"

# One change as a source reads it: (mask, Root, rel dir, name, cookie), the mask in inotify's
# bits (fanotify's are the same); an overflow is (Q_OVERFLOW, None, "", "", 0).
RawEvent = tuple


class Source(Protocol):
    """What the watcher reads, and the bookkeeping its events call for (watches to add, move
    and drop under inotify; nothing under fanotify)."""

    kind: str  # "inotify" or "fanotify"
    pairs_later: bool  # whether a MOVED_TO may come in a later read than its MOVED_FROM
    roots: list[Root]
    excluded: Excluded
    on_progress: Optional[Callable[[int], None]]
    watch_count: int

    def fileno(self) -> int: ...
    def read(self, size: int) -> list[RawEvent]: ...
    def close(self) -> None: ...
    def describe(self) -> str: ...
    def watch_all(self) -> int: ...
    def counts(self) -> list[tuple[int, int]]: ...
    def path(self, root: Root, rel: str) -> str: ...
    def dir_created(self, root: Root, rel: str) -> None: ...
    def dir_deleted(self, root: Root, rel: str) -> None: ...
    def dir_moved(self, root: Root, src: str, dst: str) -> None: ...
    def dir_moved_out(self, root: Root, rel: str) -> None: ...
    def root_lost(self, root: Root) -> None: ...
    def root_back(self, root: Root) -> None: ...
    def overflowed(self, root: Root) -> None: ...
    def expire_missed(self) -> None: ...
    def retry(self) -> list[tuple[Root, str]]: ...
    def mount_changed(self, root: Root, rel: str, mount_id: Optional[str]) -> None: ...


# Why auto keeps inotify when a plugin is on: fanotify tells what ends on disk, not each step.
FOR_PLUGINS = ("a plugin is on: it hears of every change, in order, as inotify gives them "
               "(fanotify merges a name's unread changes and drops those below a directory "
               "deleted meanwhile)")


def _kept_from_fanotify(roots: Sequence[str]) -> Optional[str]:
    """Why auto does not even try fanotify: it cannot run here, or a root shares its file
    system with other local users."""
    why_not = fanwatch.probe()
    if why_not:
        return f"fanotify unavailable: {why_not}"
    return fanwatch.shared_with_users(roots)


def choose_source(use: str, roots: Sequence[str], rules: Rules, unreadable: list[Unreadable],
                  unwatched_resync: float, raise_limits: bool,
                  plugin: bool = False) -> tuple[Source, str]:
    """The source `use` asks for, and why it was chosen (a phrase for the log). auto: fanotify
    where it can run (root, Linux 5.9, local file systems giving handles) on file systems of
    their own (not /tmp's, /home's...) unless a plugin is on, else inotify."""
    if use == INOTIFY:
        why = "asked for"
    elif use == AUTO and plugin:
        why = FOR_PLUGINS
    elif use == AUTO and (kept := _kept_from_fanotify(roots)):
        why = kept
    else:
        try:
            return (fanwatch.FanotifySource(roots, rules.modify, rules.is_excluded, unreadable,
                                            unwatched_resync=unwatched_resync),
                    "asked for" if use == FANOTIFY else "available")
        except fanwatch.Unavailable as exc:
            if use == FANOTIFY:
                raise SersyncpyError(f"the fanotify watcher cannot run: {exc}") from None
            why = f"fanotify unavailable: {exc}"
    table = WatchTable(
        inotify_instance(raise_limits), roots,
        BASE_MASK | (F.MODIFY if rules.modify else 0), rules.is_excluded,
        unreadable, unwatched_resync, raise_limits)
    return table, why
