"""The replicator: one watcher over every root, one lane per root and remote, the fail log,
the status file and the sync-mode plugin, built from a Config; started, reloaded (SIGHUP)
and stopped by the main loop (daemon.py).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import replace
from typing import Optional

from sersyncpy import config as configmod
from sersyncpy import faillog, fullsync, logs, statusfile
from sersyncpy.diskstate import SharedStates, Unreadable
from sersyncpy.errors import SersyncpyError, UsageError
from sersyncpy.events import Event
from sersyncpy.lane import Lane, Slots
from sersyncpy.plugins import registry
from sersyncpy.plugins.gate import Gate
from sersyncpy.plugins.runner import Runner
from sersyncpy.watcher import Watcher
from sersyncpy.wiring import Tuning, excluded_by, rules_for, target_for

logger = logging.getLogger(__name__)


class Replicator:
    """The running pipeline: one watcher over every root, one lane per root and remote."""

    def __init__(self, cfg: configmod.Config, threads: int = 10,
                 tuning: Optional[Tuning] = None, status_path: Optional[str] = None):
        self.tuning = tuning or Tuning()
        self.config = cfg
        self._slots = Slots(threads)
        roots = [lp.watch for lp in cfg.localpaths]
        # <sersync><plugin start="true">: told of each change once every remote has it.
        self.runner: Optional[Runner] = None
        self.gate: Optional[Gate] = None
        if cfg.sersync_plugin:
            settings = configmod.plugin_settings(cfg, cfg.sersync_plugin, standalone=False)
            self.runner = Runner(registry.build(cfg.sersync_plugin, settings), settings.delivery)
            self.gate = Gate(roots, [[] for _ in roots], self.runner.offer, self.runner.limit,
                             self.runner.drop, inside=self.runner.plugin.notices_inside,
                             excluded=excluded_by(cfg))
        # Per root, the paths that could not be read: named once, whatever the remotes.
        self.unreadable = [Unreadable(lp.watch) for lp in cfg.localpaths]
        # What each path of a root is on disk, found once for all its lanes.
        self.states = [SharedStates(lp.watch) for lp in cfg.localpaths]
        self.lanes: list[list[Lane]] = [
            [self._lane(index, lp.watch, remote) for remote in lp.remotes]
            for index, lp in enumerate(cfg.localpaths)
        ]
        if self.gate is not None:
            for index, lanes in enumerate(self.lanes):
                self.gate.set_lanes(index, lanes)
        self._retired: list[Lane] = []  # lanes of remotes a reload removed
        self.watcher = Watcher(roots, rules_for(cfg), self._sink,
                               unwatched_resync=self.tuning.unwatched_resync,
                               raise_limits=self.tuning.raise_limits,
                               unreadable=self.unreadable,
                               use=self.tuning.watcher or cfg.watcher,
                               plugin=self.runner is not None)
        self.fail_log = faillog.FailLogWriter(cfg.fail_log.path, self.all_lanes(),
                                              retry_minutes=cfg.fail_log.time_to_execute)
        self._replayed = False  # until then the fail log on disk is the last run's: keep it
        self.status_path = status_path or statusfile.default_path(cfg.fail_log.path)
        self.status_health = faillog.WriteHealth(self.status_path)
        self._status_due = 0.0
        self._started = time.time()
        self.start_dir: Optional[str] = None  # where sersyncpy started (-d moves to /)
        self._crontab = fullsync.Schedule(fullsync.crontab_minutes(cfg), time.monotonic())
        self.metrics = None
        if cfg.metrics.start:  # imported only then: prometheus_client costs ~30 ms at start
            from sersyncpy.metrics import MetricsServer

            self.metrics = MetricsServer(cfg.metrics.hostip, cfg.metrics.port, self.snapshot)
        self._first_full: Optional[tuple[logs.Progress, list[Lane]]] = None  # -r, until done

    def _lane(self, index: int, root: str, remote: configmod.Remote) -> Lane:
        # In sync mode the lane tells the plugin's gate what each batch pushed, directly.
        on_pushed = functools.partial(self.gate.pushed, index) if self.gate else None
        return Lane(root, target_for(self.config, remote), self._slots,
                    self.tuning.delete_hold, on_pushed=on_pushed,
                    max_pending=self.config.fail_log.max_pending,
                    unreadable=self.unreadable[index], excluded=excluded_by(self.config),
                    states=self.states[index])

    def _sink(self, root_index: int, events: list[Event]) -> None:
        seq = self.gate.record(root_index, events) if self.gate else 0
        self.states[root_index].forget(
            path for e in events for path in ((e.path,) if e.src is None else (e.path, e.src)))
        for lane in self.lanes[root_index]:
            lane.offer(events, seq)

    def threads(self) -> list[threading.Thread]:
        runner = [self.runner] if self.runner else []
        return [self.watcher, self.fail_log, *self.all_lanes(), *runner]

    def all_lanes(self) -> list[Lane]:
        return [lane for lanes in self.lanes for lane in lanes]

    def describe(self) -> str:
        return f"replicating to {len(self.all_lanes())} remote(s)"

    def start(self, full_first: bool = False) -> None:
        """Watch everything first, then replay the fail log, then go live with a full sync of
        every root beside the live pushes (with -r: through each lane, first); so nothing
        written meanwhile, or while sersyncpy was not running, is missed (sersync pushed
        before watching, lost its queue on every stop, and resynced only with -r)."""
        started = time.monotonic()
        progress = logs.Progress("watching", "directories")
        self.watcher.on_progress = progress.update
        count = self.watcher.watch_all()
        self.watcher.on_progress = None
        progress.done()
        where = ", ".join(lp.watch for lp in self.config.localpaths)
        if self.watcher.kind == "fanotify":
            logger.info("watching everything under %s with fanotify in %.2fs", where,
                        time.monotonic() - started)
        else:
            logger.info("watching %d directories under %s in %.2fs", count, where,
                        time.monotonic() - started)
        self._replay_fail_log()
        if full_first:
            fullsync.request(self.all_lanes(), "-r")
            self._first_full = (logs.Progress("-r full sync", "remotes done"),
                                list(self.all_lanes()))
        self.fail_log.write(faillog.RUNNING)  # a kill from now on is seen at the next start
        if self.runner is not None:
            self.runner.start()
        for lane in self.all_lanes():
            lane.start()
            if not full_first:
                lane.resync_beside()
        self.watcher.start()
        self.fail_log.start()
        self.write_status()
        if self.metrics is not None:
            self.metrics.start()

    def _replay_fail_log(self) -> None:
        path = self.config.fail_log.path
        state, pending = faillog.load(path)
        if state == faillog.RUNNING:
            logger.warning("the previous run did not stop cleanly: replaying its fail log; "
                           "the start-up resync of every root covers its last moments")
        count = faillog.replay(pending, self.all_lanes())
        self._replayed = True
        if count:
            logger.info("replaying %d pending changes from %s", count, path)

    def dead_threads(self) -> list[str]:
        return dead(self.threads())

    # -- from the main loop ---------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        if self._first_full is not None:
            progress, lanes = self._first_full
            lanes = [lane for lane in lanes if lane in self.all_lanes()]  # reloads remove
            done = sum(1 for lane in lanes if lane.stats.last_full_sync is not None)
            progress.update(done, len(lanes))
            if done == len(lanes):
                progress.done()
                logger.info("-r full sync done on %d remote(s) in %.1fs", done,
                            now - progress.started)
                self._first_full = None
        if self._crontab.due(now):
            fullsync.request(self.all_lanes(),
                             f"<crontab> every {self.config.crontab.schedule} minutes")
        if now >= self._status_due:
            self._status_due = now + self.tuning.status
            self.write_status()

    def full_sync(self, why: str) -> None:
        fullsync.request(self.all_lanes(), why)

    def snapshot(self, running: bool = True) -> statusfile.Status:
        """Where everything stands now: what the status file says and the metrics show."""
        remotes = tuple(
            statusfile.remote_status(lane.root, lane.target.label, lane.stats, *lane.lag(),
                                     lane.paused)
            for lane in self.all_lanes())
        roots = tuple(
            statusfile.root_status(lp.watch, watched, unwatched, unreadable.count(), remotes)
            for lp, (watched, unwatched), unreadable in zip(
                self.config.localpaths, self.watcher.counts(), self.unreadable))
        plugin = None
        if self.runner is not None and self.gate is not None:
            s = self.runner.stats
            plugin = statusfile.PluginStatus(
                name=self.runner.plugin.name, queued=self.runner.pending(),
                waiting_for_remotes=self.gate.waiting(), delivered=s.delivered,
                dropped=s.dropped, failures=s.failures)
        return statusfile.Status(
            format=statusfile.FORMAT, running=running, updated=time.time(),
            interval=self.tuning.status, remotes=remotes, roots=roots, plugin=plugin,
            pid=os.getpid(), config=self.config.source, started=self._started,
            fail_log=statusfile.file_status(self.fail_log.health),
            status_file=statusfile.file_status(self.status_health),
            overflows=self.watcher.overflows, watcher=self.watcher.kind)

    def write_status(self, running: bool = True) -> None:
        try:
            statusfile.write(self.status_path, self.snapshot(running))
        except Exception as exc:  # a full disk: said once, tried again in 2 s, never fatal
            self.status_health.failed(exc, "the status file")
        else:
            self.status_health.worked("the status file")

    def reload(self, path: str) -> bool:
        """SIGHUP: read the config again and apply added or removed remotes, changed rsync
        options, excludes and <crontab>, without a restart or a full resync of the remotes
        that stay. A config that cannot be applied is refused; the running one stays."""
        try:
            new = self._load(path)
            if new.sersync_plugin:
                configmod.plugin_settings(new, new.sersync_plugin, standalone=False)
            old_roots = [lp.watch for lp in self.config.localpaths]
            new_roots = [lp.watch for lp in new.localpaths]
            if new_roots != old_roots:
                raise UsageError(f"{path}: the watched directories changed ("
                                 f"{', '.join(old_roots)} -> {', '.join(new_roots)}); "
                                 "restart sersyncpy to apply that")
        except SersyncpyError as exc:
            logger.error("reload refused, the running config stays: %s", exc)
            return False
        for what, old_value, new_value in (
                ("<sersync><plugin>", self.config.sersync_plugin, new.sersync_plugin),
                ("the plugin settings", self.config.plugins, new.plugins),
                ("<failLog>", self.config.fail_log, new.fail_log),
                ("<inotify><modify>", self.config.inotify.modify, new.inotify.modify)):
            if old_value != new_value:
                logger.warning("reload: %s changed; that takes a restart", what)
        removed = set(self.config.filter.excludes) - set(new.filter.excludes)
        if removed:
            # Directories an exclude kept out have no watch; only a restart scans for them.
            logger.warning("reload: removing an exclude (%s) takes a restart: the directories "
                           "it kept out are not watched yet", ", ".join(sorted(removed)))
        old = self.config
        self.config = replace(new, sersync_plugin=old.sersync_plugin, plugins=old.plugins,
                              fail_log=old.fail_log)
        self.watcher.use_rules(rules_for(self.config))
        changed = [f"{len(self.config.filter.excludes)} exclude(s)"]
        for index, lp in enumerate(self.config.localpaths):
            changed += self._reload_remotes(index, lp)
        for lane in self.all_lanes():
            lane.filter_with(excluded_by(self.config))
        self.fail_log.track(self.all_lanes())
        if self.config.crontab != old.crontab:
            self._crontab = fullsync.Schedule(fullsync.crontab_minutes(self.config),
                                              time.monotonic())
            changed.append("crontab")
        logger.info("reloaded %s: %s", path, ", ".join(changed))
        return True

    def _load(self, path: str) -> configmod.Config:
        """Relative paths in the file mean what they meant at start, also after -d moved to
        /: the config is read from the directory sersyncpy started in. Only the main thread
        reads it, and nothing else depends on the working directory."""
        if self.start_dir is None or self.start_dir == os.getcwd():
            return configmod.load(path)
        here = os.getcwd()
        os.chdir(self.start_dir)
        try:
            return configmod.load(path)
        finally:
            os.chdir(here)

    def _reload_remotes(self, index: int, lp: configmod.LocalPath) -> list[str]:
        # A remote is who it is by its label (host, port, module or directory), as in the
        # log, the status file and the fail log.
        lanes = {lane.target.label: lane for lane in self.lanes[index]}
        kept, changed = [], []
        for remote in lp.remotes:
            target = target_for(self.config, remote)
            lane = lanes.pop(target.label, None)
            if lane is None:
                lane = self._lane(index, lp.watch, remote)
                # A new remote has nothing yet: it alone gets the whole root.
                lane.start()
                lane.resync_beside()
                changed.append(f"added {target.label}")
            elif lane.target != target:
                lane.retarget(target)
                changed.append(f"new options for {target.label}")
            kept.append(lane)
        for lane in lanes.values():
            pending, _lag = lane.lag()
            logger.warning("reload: %s removed; %d pending changes for it are dropped",
                           lane.target.label, pending)
            lane.abandon()
            self._retired.append(lane)
            changed.append(f"removed {lane.target.label}")
        self.lanes[index] = kept
        if self.gate is not None:
            self.gate.set_lanes(index, kept)
        return changed

    def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop watching, push what is queued, wait for the lanes, and leave in the fail log
        what could not be pushed, marked as a clean stop."""
        self.watcher.stop()
        if self.watcher.is_alive():
            self.watcher.join()
        for lane in self.all_lanes():
            lane.stop(drain_seconds)
        for lane in self.all_lanes() + self._retired:
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
        if self.metrics is not None:
            self.metrics.stop()
        self.write_status(running=False)


def dead(threads: list[threading.Thread]) -> list[str]:
    """The names of threads that ended on their own (an unexpected error, already logged)."""
    return [t.name for t in threads if t.ident is not None and not t.is_alive()]


def stop_runner(runner: Runner, drain_seconds: float = 2.0) -> None:
    runner.stop(drain_seconds)
    # A delivery under way (a slow command) is not waited for long: the thread is a daemon
    # thread, and what it still holds is lost with the process, as the log says.
    runner.join(drain_seconds + 10.0)
    if runner.is_alive():
        logger.warning("plugin %s: still delivering at stop; %d notices are dropped",
                       runner.plugin.name, runner.pending())
