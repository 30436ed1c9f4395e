"""One batch of a lane, pushed: planned against the disk as it is now (plan), sent as the few
rsync calls the plan asks for, in order, and what came of it (Pushed). No thread and no
queue: the lane calls Pusher.push with a slot held, and keeps what failed for later.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Callable, Optional

from sersyncpy import probe, rsync, rsync_failures, rsyncrun
from sersyncpy.diskstate import (
    SharedStates,
    State,
    Unreadable,
    disk_state,
    is_empty,
    is_small_tree,
)
from sersyncpy.events import COVERING, DELETE, FULL, RENAME, SUBTREE, UPDATE, Event, is_clean
from sersyncpy.rules import Excluded, cleanup_file, exclude_file, excluded_below
from sersyncpy.stall import PROBE_TIMEOUT_SECONDS, Stall

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    """What one batch becomes: the rsync calls to make, in this order."""

    renames: list[Event] = field(default_factory=list)  # one --link-dest call each
    full: list[Event] = field(default_factory=list)  # one quick-check recursive call
    listed: list[Event] = field(default_factory=list)  # one call for all of them
    dirs: list[Event] = field(default_factory=list)  # one non-recursive call for all of them
    root_gone: bool = False  # the watcher saw the root itself go: push nothing
    missing: list[Event] = field(default_factory=list)  # in `listed`: deletions on the remote
    skipped: list[Event] = field(default_factory=list)  # left to their parent's deletion
    unreadable: list[Event] = field(default_factory=list)  # we may not read them: not sent
    recursed: list[str] = field(default_factory=list)  # directories rsync sends whole
    unclean: list[Event] = field(default_factory=list)  # not a clean path below the root


def plan(batch: list[Event], state: Callable[[str], State],
         renamable: Callable[[str, str], bool]) -> Plan:
    """Sort a batch into rsync calls by kind and by what each path is on disk now.

    The disk decides because the batch may be older than the tree: a renamed directory that
    has gone again is just a deletion, a directory whose metadata changed must not be
    recursed into, and whatever a listed path is now is what rsync will send. A shadowed
    path is left out: rsync would fail on it or, below a symlink, follow it out of the tree;
    the ancestor that became a file or a symlink carries its deletion. An unreadable one is
    left out too: rsync could not read it either, and retrying would not help.
    """
    p = Plan()
    for event in batch:
        if event.path == "" and event.kind == DELETE:
            p.root_gone = True
            continue
        if not is_clean(event.path) or (event.src is not None and not is_clean(event.src)):
            p.unclean.append(event)  # never produced here; a bug, not input to trust
            continue
        now = state(event.path)
        if now is State.SHADOWED:
            continue
        if now is State.UNREADABLE:
            p.unreadable.append(event)
            continue
        if (now is State.MISSING and "/" in event.path
                and state(event.path.rsplit("/", 1)[0]) is State.MISSING):
            # Its parent went too: the parent's own event deletes (or renames) it whole.
            p.skipped.append(event)
            continue
        if now is State.DIR and event.kind in COVERING:
            p.recursed.append(event.path)
        if (event.kind == RENAME and now is State.DIR
                and renamable(event.src or "", event.path)):
            p.renames.append(event)
        elif event.kind == FULL and now is State.DIR:
            p.full.append(event)
        elif event.kind == UPDATE and now is State.DIR:
            p.dirs.append(event)
        else:
            p.listed.append(event)
            if now is State.MISSING:
                p.missing.append(event)
    return p


@dataclass
class LaneStats:
    """What one lane did: written by its pushes and its queue, read by the status file and
    the metrics (status.snapshot)."""

    batches: int = 0
    paths: int = 0
    rsync_runs: int = 0
    failures: int = 0  # consecutive failed batches
    failed_batches: int = 0  # since start
    files_sent: int = 0
    bytes_sent: int = 0
    events_in: int = 0  # offered to the lane, before collapsing
    events_out: int = 0  # taken in batches, after collapsing
    last_success: Optional[float] = None  # time.time()
    last_full_sync: Optional[float] = None  # time.time() of the last full push that worked
    last_error: str = ""
    last_code: int = 0
    collapses: int = 0  # times the pending paths became one full sync (max_pending)


@dataclass
class Pushed:
    """What came of one batch: the events that did not reach the remote (to retry), those
    held back for now (deletions), and those dropped on purpose (left to a parent's
    deletion, unreadable, unclean); `root_gone` when nothing could be pushed at all."""

    failed: list[Event] = field(default_factory=list)
    held: list[Event] = field(default_factory=list)
    dropped: list[Event] = field(default_factory=list)
    root_gone: bool = False


# Whether the lane holds back some deletions of a plan for now (deletionhold.DeletionHold).
Hold = Callable[[Plan], list[Event]]


class Pusher:
    """Pushes batches of one root to one remote, counting in `stats`."""

    def __init__(self, root: str, target: rsync.Target, stats: LaneStats,
                 unreadable: Unreadable, excluded: Optional[Excluded] = None,
                 states: Optional[SharedStates] = None):
        self.root = root
        self.states = states or SharedStates(root)  # shared with the root's other lanes
        self.target = target  # replaced by a reload (Lane.retarget), read at each call
        self.stats = stats
        self.unreadable = unreadable
        self.excluded = excluded  # the <filter> regexes (Rules.is_excluded), when on

    def push(self, batch: list[Event], root_present: Callable[[], bool], hold: Hold) -> Pushed:
        """Plan the batch against the disk, hold back what `hold` says, send the rest."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: batch: %s", self.target.label, ", ".join(map(str, batch)))
        seen: dict[str, State] = {}  # the directories of this batch, each checked once
        p = plan(batch, lambda rel: self.states.state(rel, seen),
                 self._worth_a_rename)
        if p.root_gone or not root_present():
            return Pushed(failed=batch, root_gone=True)
        if p.unclean:
            logger.error("%s: refusing %d paths that are not clean paths below the root: %s",
                         self.target.label, len(p.unclean), ", ".join(map(str, p.unclean[:5])))
        if p.unreadable:
            self.unreadable.report(e.path for e in p.unreadable)
        held = hold(p)
        excluded = self._excluded_below(p.recursed)
        with exclude_file(excluded or []) as exclude_from:
            failed = self._send(p, exclude_from)
        if excluded is not None and not failed:
            failed += self._take_back_raced(p.recursed, excluded)
        if failed:
            self.states.forget(e.path for e in failed)  # found again at the retry
            self.stats.failures += 1
            self.stats.failed_batches += 1
        else:
            self.stats.failures = 0
            self.stats.last_success = time.time()
            self.unreadable.readable(e.path for e in p.listed + p.full + p.dirs + p.renames)
        self.stats.batches += 1
        return Pushed(failed, held, p.skipped + p.unreadable + p.unclean)

    def _worth_a_rename(self, src: str, dst: str) -> bool:
        """Whether a renamed directory goes with a call of its own that hard-links it from
        its old name (rename_argv); a small one goes whole in the batch's call instead."""
        return (rsync.renamable(self.target, src, dst)
                and not is_small_tree(os.path.join(self.root, dst)))

    def _excluded_below(self, tops: list[str]) -> Optional[list[str]]:
        """What the <filter> regexes leave out below directories sent whole (None: no
        <filter>, or nothing sent whole)."""
        if self.excluded is None or not tops:
            return None
        return excluded_below(self.root, tops, self.excluded)

    def exclusions(self, tops: list[str]) -> AbstractContextManager[Optional[str]]:
        """The --exclude-from file for pushes that send `tops` whole (the start-up resync's)."""
        return exclude_file(self._excluded_below(tops) or [])

    def _take_back_raced(self, tops: list[str], excluded: list[str]) -> list[Event]:
        """A file the regexes leave out, created below a directory sent whole between the
        walk that listed the exclusions and rsync's own walk, went with it (an archive
        unpacked into a new directory): delete it on the remote, where nothing else would."""
        after = self._excluded_below(tops) or []
        before = set(excluded)
        raced = [path for path in after if path not in before]
        if not raced or not self.target.full_deletes:
            return []
        parents = sorted({path.rpartition("/")[0] for path in raced})
        with cleanup_file(raced, [path for path in after if path in before]) as rules:
            argv = rsync.cleanup_argv(self.target, rules or "")
            ok = self._run(argv, [Event(SUBTREE, path, True) for path in parents], "cleanup",
                           parents).ok
        return [] if ok else [Event(SUBTREE, path, True) for path in parents]

    def _send(self, p: Plan, exclude_from: Optional[str]) -> list[Event]:
        """The rsync calls of a planned batch, in order (renames, full syncs, listed paths,
        directories' own metadata); returns the events that did not reach the remote."""
        failed: list[Event] = []
        for event in p.renames:
            argv = rsync.rename_argv(self.target, event.src or "", event.path, exclude_from)
            if not self._run(argv, [event], "rename").ok:
                # Perhaps an rsync older than 3.2.3 (no --mkpath): send the directory whole.
                p.listed.append(Event(SUBTREE, event.path, True))
        full = [e for e in p.full if not self._empty_full_push(e)]
        if full:
            argv = rsync.full_argv(self.target, exclude_from)
            if not self._run(argv, full, "full").ok:
                failed += full
            elif any(e.path == "" for e in full):
                self.stats.last_full_sync = time.time()
        if p.listed:
            argv = rsync.listed_argv(self.target, exclude_from)
            result = self._run(argv, p.listed, "batch")
            if not result.ok:
                failed += self._which_failed(result, p.listed)
            elif result.code == 24 and p.missing:
                p.skipped += self._parent_vanished(p.missing)
        if p.dirs:
            if not self._run(rsync.dirs_argv(self.target), p.dirs, "dirs").ok:
                failed += p.dirs
        return failed

    def _parent_vanished(self, missing: list[Event]) -> list[Event]:
        """Listed deletions whose parent went between the plan and rsync (exit 24): rsync
        could not reach them, and the parent's own deletion, still to come, carries them.
        They are not reported pushed: the plugins hear of them when the parent goes."""
        return [e for e in missing if "/" in e.path
                and disk_state(self.root, e.path.rpartition("/")[0]) is State.MISSING]

    def _empty_full_push(self, event: Event) -> bool:
        """An empty root is more often a failed mount than a wish to delete it all."""
        directory = os.path.join(self.root, event.path)
        if not self.target.deletes or not is_empty(directory):
            return False
        logger.warning("%s: skipping the full push of %s: it is empty (an unmounted file "
                       "system?), and a full push would delete everything below it on the "
                       "remote", self.target.label, directory)
        return True

    def _watchdog(self) -> Stall:
        """Restarts a call stalled across an outage of the remote (stall.py)."""
        target = self.target
        return Stall(lambda: probe.reachable(target, PROBE_TIMEOUT_SECONDS))

    def _which_failed(self, result: rsyncrun.Result, events: list[Event]) -> list[Event]:
        """After a partial transfer (23), only the paths rsync names failed; otherwise, or
        when it cannot be told, the whole call."""
        if result.code != 23:
            return events
        directories = ([e.path for e in events if disk_state(self.root, e.path) is State.DIR]
                       if self.target.deletes else ())
        names = rsync_failures.failed_paths(result.stderr, [e.path for e in events], self.root,
                                            directories=directories)
        if names is None:
            return events
        failed = [e for e in events if e.path in names]
        logger.info("%s: %d of %d paths to retry after the partial transfer",
                    self.target.label, len(failed), len(events))
        return failed

    def _run(self, argv: list[str], events: list[Event], what: str,
             paths: Optional[list[str]] = None) -> rsyncrun.Result:
        """Run one call of rsync.*_argv for `events` (their paths, unless `paths` says
        which to list), counted in the stats."""
        listed = [e.path for e in events] if paths is None else paths
        result = rsyncrun.run_paths(argv, self.root, listed if "--files-from=-" in argv else [],
                                 watchdog=self._watchdog)
        self.stats.rsync_runs += result.calls
        if result.ok:
            self.stats.paths += len(events)
            self.stats.files_sent += result.files
            self.stats.bytes_sent += result.sent
            logger.info("%s: %s of %d paths, exit %d, %.3fs", self.target.label, what,
                        len(events), result.code, result.seconds)
            return result
        self.stats.last_code = result.code
        self.stats.last_error = f"exit {result.code} ({rsync.describe_exit(result.code)})"
        fatal = rsync.classify(result.code) is rsync.Outcome.FATAL
        level = logging.ERROR if fatal else logging.WARNING
        lines = result.stderr.splitlines()
        logger.log(level, "%s: %s of %d paths failed: %s%s", self.target.label, what,
                   len(events), self.stats.last_error,
                   "".join(f"\n    {line}" for line in lines[:10]))
        return result
