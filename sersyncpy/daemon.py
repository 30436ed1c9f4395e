"""Wiring and lifecycle: builds the watcher and the lanes from a Config, runs until a signal.

Signal handlers only set a flag; the main loop stops intake, lets the lanes push what is
queued, and returns (sersync had no handler at all and lost its queue).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional

from sersyncpy import config as configmod
from sersyncpy import faillog, plugins
from sersyncpy.errors import UsageError
from sersyncpy.events import FULL, Event
from sersyncpy.plugins.gate import Gate
from sersyncpy.plugins.runner import Runner
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
        roots = [lp.watch for lp in cfg.localpaths]
        # <sersync><plugin start="true">: told of each change once every remote has it.
        self.runner: Optional[Runner] = None
        self.gate: Optional[Gate] = None
        if cfg.sersync_plugin:
            settings = configmod.plugin_settings(cfg, cfg.sersync_plugin, standalone=False)
            self.runner = Runner(plugins.build(cfg.sersync_plugin, settings), settings.delivery)
        self.lanes: list[list[Lane]] = [
            [Lane(lp.watch, target_for(cfg, remote), slots, tuning.delete_hold,
                  on_pushed=functools.partial(self._pushed, index) if self.runner else None)
             for remote in lp.remotes]
            for index, lp in enumerate(cfg.localpaths)
        ]
        if self.runner is not None:
            self.gate = Gate(roots, self.lanes, self.runner.offer, self.runner.limit,
                             self.runner.drop)
        self.watcher = Watcher(roots, rules_for(cfg), self._sink,
                               unwatched_resync=tuning.unwatched_resync)
        self.fail_log = faillog.FailLogWriter(cfg.fail_log.path, self.all_lanes(),
                                              retry_minutes=cfg.fail_log.time_to_execute)
        self._replayed = False  # until then the fail log on disk is the last run's: keep it

    def _sink(self, root_index: int, events: list[Event]) -> None:
        seq = self.gate.record(root_index, events) if self.gate else 0
        for lane in self.lanes[root_index]:
            lane.offer(events, seq)

    def _pushed(self, root_index: int, lane: Lane, events: list[Event], seq: int) -> None:
        if self.gate is not None:
            self.gate.pushed(root_index, lane, events, seq)

    def threads(self) -> list[threading.Thread]:
        runner = [self.runner] if self.runner else []
        return [self.watcher, self.fail_log, *self.all_lanes(), *runner]

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
        if self.runner is not None:
            self.runner.start()
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
        return dead(self.threads())

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
        if self.runner is not None:
            if self.gate.waiting():
                logger.warning("plugin %s: %d changes had not reached every remote; they "
                               "will not be passed on", self.runner.plugin.name,
                               self.gate.waiting())
            stop_runner(self.runner)


def dead(threads: list[threading.Thread]) -> list[str]:
    """The names of threads that ended on their own (an unexpected error, already logged)."""
    return [t.name for t in threads if t.ident is not None and not t.is_alive()]


def stop_runner(runner: Runner, drain_seconds: float = 2.0) -> None:
    runner.stop(drain_seconds)
    if runner.is_alive():
        runner.join()


class PluginOnly:
    """-m NAME: the watcher and one plugin, told of each change at once; no rsync at all,
    as sersync -m. Watches the plugin's own <localpath> (command: the <sersync> ones)."""

    def __init__(self, cfg: configmod.Config, name: str, tuning: Optional[Tuning] = None):
        tuning = tuning or Tuning()
        settings = configmod.plugin_settings(cfg, name, standalone=True)
        self.roots = plugins.standalone_roots(cfg, settings)
        self.runner = Runner(plugins.build(name, settings), settings.delivery)
        self.watcher = Watcher(self.roots, rules_for(cfg), self._sink,
                               unwatched_resync=tuning.unwatched_resync)

    def _sink(self, root_index: int, events: list[Event]) -> None:
        self.runner.offer(plugins.notices_for(self.roots[root_index], events, time.time()))

    def start(self) -> None:
        started = time.monotonic()
        count = self.watcher.watch_all()
        logger.info("watching %d directories under %s in %.2fs for plugin %s", count,
                    ", ".join(self.roots), time.monotonic() - started, self.runner.plugin.name)
        self.runner.start()
        self.watcher.start()
        logger.info("running plugin %s alone (no rsync); stop with SIGTERM or Ctrl-C",
                    self.runner.plugin.name)

    def dead_threads(self) -> list[str]:
        return dead([self.watcher, self.runner])

    def stop(self) -> None:
        self.watcher.stop()
        if self.watcher.is_alive():
            self.watcher.join()
        stop_runner(self.runner)


def run(cfg: configmod.Config, threads: int = 10, full_first: bool = False,
        tuning: Optional[Tuning] = None,
        stop_event: Optional[threading.Event] = None) -> int:
    """Replicate in the foreground until SIGTERM or SIGINT; returns the exit code."""
    replicator = Replicator(cfg, threads, tuning)

    def start() -> None:
        replicator.start(full_first=full_first)
        logger.info("replicating to %d remote(s); stop with SIGTERM or Ctrl-C",
                    len(replicator.all_lanes()))

    return serve(start, replicator.dead_threads, replicator.stop, stop_event)


def run_plugin(cfg: configmod.Config, name: str, tuning: Optional[Tuning] = None,
               stop_event: Optional[threading.Event] = None) -> int:
    """-m NAME in the foreground until SIGTERM or SIGINT; returns the exit code."""
    pipeline = PluginOnly(cfg, name, tuning)
    return serve(pipeline.start, pipeline.dead_threads, pipeline.stop, stop_event)


def serve(start, dead_threads, stop_all, stop_event: Optional[threading.Event] = None) -> int:
    """Start, then wait for SIGTERM/SIGINT (or a thread's death, exit 1), then stop."""
    stop = stop_event or threading.Event()
    caught: list[int] = []

    def on_signal(signum, _frame):
        caught.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        start()
        while not stop.wait(1.0):
            gone = dead_threads()
            if gone:
                # Better to exit and be restarted (systemd) than to run half blind.
                logger.critical("stopping: %s ended unexpectedly", ", ".join(gone))
                code = 1
                break
        if caught:
            logger.info("%s: passing on what is queued, then stopping",
                        signal.Signals(caught[0]).name)
    finally:
        stop_all()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code
