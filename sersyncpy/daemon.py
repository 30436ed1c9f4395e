"""Wiring and lifecycle: builds the watcher and the lanes from a Config, runs until a signal.

Signal handlers only set a flag; the main loop stops intake, lets the lanes push what is
queued, and returns (sersync had no handler at all and lost its queue).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional

from sersyncpy import config as configmod
from sersyncpy import faillog
from sersyncpy.errors import UsageError
from sersyncpy.events import FULL, Event
from sersyncpy.pool import DELETE_HOLD_SECONDS, Lane, Slots
from sersyncpy.rsync import Target
from sersyncpy.watcher import UNWATCHED_RESYNC_SECONDS, Rules, Watcher

logger = logging.getLogger(__name__)


def rules_for(cfg: configmod.Config) -> Rules:
    i = cfg.inotify
    return Rules(
        delete=i.delete, create_file=i.create_file, close_write=i.close_write,
        move_from=i.move_from, move_to=i.move_to, attrib=i.attrib, modify=i.modify,
        excludes=cfg.filter.compiled() if cfg.filter.start else (),
        keep_dotfiles=cfg.filter.keep_dotfiles,
    )


def target_for(cfg: configmod.Config, remote: configmod.Remote) -> Target:
    r = cfg.rsync
    filtering = cfg.filter.start and bool(cfg.filter.excludes)
    return Target(
        ip=remote.ip, module=remote.name, port=remote.port,
        user=r.users if r.auth else "", password_file=r.password_file if r.auth else None,
        timeout=r.timeout, ssh=r.ssh, common_params=r.common_params,
        deletes=cfg.inotify.delete,
        excludes=cfg.crontab.excludes if filtering else (),
        full_excludes=cfg.crontab.excludes,
    )


@dataclass(frozen=True)
class Tuning:
    """Settings beyond confxml.xml, from the environment (SERSYNCPY_*), read at start-up."""

    delete_hold: float = DELETE_HOLD_SECONDS
    unwatched_resync: float = UNWATCHED_RESYNC_SECONDS

    @classmethod
    def from_environment(cls) -> Tuning:
        return cls(
            delete_hold=env_seconds("SERSYNCPY_DELETE_HOLD_SECONDS", DELETE_HOLD_SECONDS),
            unwatched_resync=env_seconds("SERSYNCPY_UNWATCHED_RESYNC_SECONDS",
                                         UNWATCHED_RESYNC_SECONDS),
        )


def env_seconds(name: str, default: float) -> float:
    """A tuning value from the environment, in seconds; a bad one is a one-line error."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}={text!r}: not a number of seconds") from None
    if not value >= 0:
        raise UsageError(f"{name}={text!r}: must be zero or more")
    return value


class Replicator:
    """The running pipeline: one watcher over every root, one lane per root and remote."""

    def __init__(self, cfg: configmod.Config, threads: int = 10,
                 tuning: Optional[Tuning] = None):
        tuning = tuning or Tuning()
        self.config = cfg
        slots = Slots(threads)
        self.lanes: list[list[Lane]] = [
            [Lane(lp.watch, target_for(cfg, remote), slots, tuning.delete_hold)
             for remote in lp.remotes]
            for lp in cfg.localpaths
        ]
        self.watcher = Watcher([lp.watch for lp in cfg.localpaths], rules_for(cfg), self._sink,
                               unwatched_resync=tuning.unwatched_resync)
        self.fail_log = faillog.FailLogWriter(cfg.fail_log.path, self.all_lanes(),
                                              retry_minutes=cfg.fail_log.time_to_execute)
        self._replayed = False  # until then the fail log on disk is the last run's: keep it

    def _sink(self, root_index: int, events: list[Event]) -> None:
        for lane in self.lanes[root_index]:
            lane.offer(events)

    def all_lanes(self) -> list[Lane]:
        return [lane for lanes in self.lanes for lane in lanes]

    def start(self, full_first: bool = False) -> None:
        """Watch everything first, then replay the fail log, then (with -r) push every root
        whole, then go live; so nothing written meanwhile is missed (sersync pushed before
        watching, and lost its queue on every stop)."""
        started = time.monotonic()
        count = self.watcher.watch_all()
        logger.info("watching %d directories under %s in %.2fs", count,
                    ", ".join(lp.watch for lp in self.config.localpaths),
                    time.monotonic() - started)
        self._replay_fail_log()
        if full_first:
            for lane in self.all_lanes():
                lane.offer([Event(FULL, "", True)])
        self.fail_log.write(faillog.RUNNING)  # a kill from now on is seen at the next start
        for lane in self.all_lanes():
            lane.start()
        self.watcher.start()
        self.fail_log.start()

    def _replay_fail_log(self) -> None:
        path = self.config.fail_log.path
        state, pending = faillog.load(path)
        if state == faillog.RUNNING:
            logger.warning("the previous run did not stop cleanly: replaying its fail log "
                           "and resyncing every root (rsync's quick check)")
        count = faillog.replay(state, pending, self.all_lanes())
        self._replayed = True
        if count:
            logger.info("replaying %d pending changes from %s", count, path)

    def dead_threads(self) -> list[str]:
        """Threads that ended on their own (an unexpected error, already logged)."""
        threads = [self.watcher, self.fail_log, *self.all_lanes()]
        return [t.name for t in threads if t.ident is not None and not t.is_alive()]

    def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop watching, push what is queued, wait for the lanes, and leave in the fail log
        what could not be pushed, marked as a clean stop."""
        self.watcher.stop()
        if self.watcher.is_alive():
            self.watcher.join()
        for lane in self.all_lanes():
            lane.stop(drain_seconds)
        for lane in self.all_lanes():
            if lane.is_alive():
                lane.join()
        self.fail_log.stop()
        if self._replayed:
            self.fail_log.close()


def run(cfg: configmod.Config, threads: int = 10, full_first: bool = False,
        tuning: Optional[Tuning] = None,
        stop_event: Optional[threading.Event] = None) -> int:
    """Replicate in the foreground until SIGTERM or SIGINT; returns the exit code."""
    stop = stop_event or threading.Event()
    caught: list[int] = []

    def on_signal(signum, _frame):
        caught.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    replicator = Replicator(cfg, threads, tuning)
    code = 0
    try:
        replicator.start(full_first=full_first)
        logger.info("replicating to %d remote(s); stop with SIGTERM or Ctrl-C",
                    len(replicator.all_lanes()))
        while not stop.wait(1.0):
            dead = replicator.dead_threads()
            if dead:
                # Better to exit and be restarted (systemd) than to run half blind.
                logger.critical("stopping: %s ended unexpectedly", ", ".join(dead))
                code = 1
                break
        if caught:
            logger.info("%s: pushing what is queued, then stopping",
                        signal.Signals(caught[0]).name)
    finally:
        replicator.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code
