"""The process's life: runs the replicator (or -m's plugin alone) in the foreground until
SIGTERM or SIGINT; the main loop acts on signals (reload, reopen the log, full sync), ticks the
replicator (crontab, status file) and talks to systemd. Signal handlers only set a flag.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable, Optional

from sersyncpy import config as configmod
from sersyncpy import faillog, logs, plugins, statefiles, systemd
from sersyncpy.errors import SersyncpyError
from sersyncpy.events import Event
from sersyncpy.plugins import registry
from sersyncpy.plugins.runner import Runner
from sersyncpy.replicator import Replicator, dead, stop_runner
from sersyncpy.watcher import Watcher
from sersyncpy.wiring import Tuning, excluded_by, rules_for

logger = logging.getLogger(__name__)


class PluginOnly:
    """-m NAME: the watcher and one plugin, told of each change at once; no rsync at all,
    as sersync -m. Watches the plugin's own <localpath> (command: the <sersync> ones)."""

    def __init__(self, cfg: configmod.Config, name: str, tuning: Optional[Tuning] = None):
        tuning = tuning or Tuning()
        settings = configmod.plugin_settings(cfg, name, standalone=True)
        self.roots = plugins.standalone_roots(cfg, settings)
        self.runner = Runner(registry.build(name, settings), settings.delivery)
        self._excluded = excluded_by(cfg)
        self.watcher = Watcher(self.roots, rules_for(cfg), self._sink,
                               unwatched_resync=tuning.unwatched_resync,
                               raise_limits=tuning.raise_limits,
                               use=tuning.watcher or cfg.watcher, plugin=True)

    def _sink(self, root_index: int, events: list[Event]) -> None:
        self.runner.offer(plugins.notices_for(self.roots[root_index], events, time.time(),
                                              self.runner.plugin.notices_inside, self._excluded))

    def describe(self) -> str:
        return f"running plugin {self.runner.plugin.name} alone (no rsync)"

    def start(self) -> None:
        started = time.monotonic()
        count = self.watcher.watch_all()
        logger.info("watching %d directories under %s in %.2fs for plugin %s", count,
                    ", ".join(self.roots), time.monotonic() - started, self.runner.plugin.name)
        self.runner.start()
        self.watcher.start()

    def dead_threads(self) -> list[str]:
        return dead([self.watcher, self.runner])

    def tick(self) -> None:
        pass

    def full_sync(self, why: str) -> None:
        logger.info("%s: no full sync in plugin-only mode", why)

    def reload(self, path: str) -> bool:
        logger.warning("reload: not available with -m; restart sersyncpy to apply %s", path)
        return False

    def stop(self) -> None:
        self.watcher.stop()
        if self.watcher.is_alive():
            self.watcher.join()
        stop_runner(self.runner)


def run(cfg: configmod.Config, threads: int = 10, full_first: bool = False,
        tuning: Optional[Tuning] = None, stop_event: Optional[threading.Event] = None,
        config_path: Optional[str] = None, status_path: Optional[str] = None,
        on_ready: Optional[Callable[[], None]] = None,
        start_dir: Optional[str] = None) -> int:
    """Replicate in the foreground until SIGTERM or SIGINT; returns the exit code. The fail
    log is this run's alone (its lock, held to the end), kept in the state directory unless
    the config says otherwise (a shared directory such as /tmp gets a WARNING)."""
    path = cfg.fail_log.path
    statefiles.ensure_dir_of(path)  # the default state directory, at the first start
    shared = faillog.shared_warning(path)
    if shared:
        logger.warning("%s", shared)
    lock = faillog.lock(path)
    try:
        try:
            lock.write()
        except SersyncpyError as exc:  # a full disk: held all the same, the pid is for people
            logger.warning("%s", exc)
        replicator = Replicator(cfg, threads, tuning, status_path)
        replicator.start_dir = start_dir
        return serve(replicator, lambda: replicator.start(full_first=full_first),
                     config_path or cfg.source, stop_event, on_ready)
    finally:
        lock.remove()


def run_plugin(cfg: configmod.Config, name: str, tuning: Optional[Tuning] = None,
               stop_event: Optional[threading.Event] = None,
               config_path: Optional[str] = None,
               on_ready: Optional[Callable[[], None]] = None) -> int:
    """-m NAME in the foreground until SIGTERM or SIGINT; returns the exit code."""
    pipeline = PluginOnly(cfg, name, tuning)
    return serve(pipeline, pipeline.start, config_path or cfg.source, stop_event, on_ready)


def serve(pipeline, start: Callable[[], None], config_path: str,
          stop_event: Optional[threading.Event] = None,
          on_ready: Optional[Callable[[], None]] = None) -> int:
    """Start, tell systemd (and -d's waiting parent) we are ready, then run the main loop
    until SIGTERM/SIGINT or a thread's death (exit 1): SIGHUP reloads the config, SIGUSR1
    reopens the log file, SIGUSR2 asks for a full sync; watchdog pings from this loop."""
    stop = stop_event or threading.Event()
    wake = threading.Event()
    caught: list[int] = []

    def on_signal(signum, _frame):
        caught.append(signum)
        if signum in (signal.SIGTERM, signal.SIGINT):
            stop.set()
        wake.set()

    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
    previous = {s: signal.signal(s, on_signal) for s in handled}
    watchdog = systemd.watchdog_seconds()
    period = min(1.0, watchdog) if watchdog else 1.0
    code = 0
    try:
        start()
        logger.info("%s; stop with SIGTERM or Ctrl-C", pipeline.describe())
        systemd.ready(pipeline.describe())
        if on_ready is not None:
            on_ready()
        ping_due = 0.0
        while not stop.is_set():
            if watchdog and time.monotonic() >= ping_due:
                systemd.watchdog()
                ping_due = time.monotonic() + watchdog
            wake.wait(period)
            wake.clear()
            while caught and not stop.is_set():
                _handle(caught.pop(0), pipeline, config_path)
            if stop.is_set():
                break
            gone = pipeline.dead_threads()
            if gone:
                # Better to exit and be restarted (systemd) than to run half blind.
                logger.critical("stopping: %s ended unexpectedly", ", ".join(gone))
                code = 1
                break
            pipeline.tick()
        systemd.stopping()
        if caught:
            logger.info("%s: passing on what is queued, then stopping",
                        signal.Signals(caught[-1]).name)
    finally:
        pipeline.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


def _handle(signum: int, pipeline, config_path: str) -> None:
    if signum == signal.SIGHUP:
        systemd.reloading()
        logger.info("SIGHUP: reloading %s", config_path)
        pipeline.reload(config_path)
        systemd.ready(pipeline.describe())
    elif signum == signal.SIGUSR1:
        logs.reopen()
    elif signum == signal.SIGUSR2:
        pipeline.full_sync("SIGUSR2")
