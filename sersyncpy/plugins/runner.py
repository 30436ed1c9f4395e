"""The thread a plugin runs in: a bounded queue of notices, retries with backoff within the
plugin's retry budget, and counted, logged drops. Replication never waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

from sersyncpy.backoff import Backoff
from sersyncpy.plugins import DeliveryError, Notice, Plugin
from sersyncpy.plugins.settings import Delivery
from sersyncpy.worker import Worker

logger = logging.getLogger(__name__)

BATCH = 500  # notices handed to the plugin at once
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0  # so a target that is back is used again within seconds
DROP_LOG_SECONDS = 10.0  # drops are summed into one warning at most this often


@dataclass
class RunnerStats:
    delivered: int = 0
    dropped: int = 0  # queue full, retry budget spent, or still queued at stop
    failures: int = 0  # failed delivery attempts
    last_error: str = ""


class Runner(Worker):
    """Delivers notices to one plugin, in order, from its own thread."""

    def __init__(self, plugin: Plugin, delivery: Delivery):
        super().__init__(f"plugin {plugin.name}")
        self.plugin = plugin
        self.limit = delivery.queue
        self.retry_seconds = delivery.retry_seconds
        self.stats = RunnerStats()
        self._queue: deque[tuple[float, Notice]] = deque()  # (monotonic time queued, notice)
        self._cond = threading.Condition()
        self._deadline = 0.0
        self._unlogged_drops = 0
        self._drops_logged_at = float("-inf")
        self._ended = False

    # -- called from other threads ------------------------------------------------------

    def offer(self, notices: list[Notice]) -> None:
        if not notices:
            return
        now = time.monotonic()
        with self._cond:
            room = 0 if self._ended else max(0, self.limit - len(self._queue))
            self._queue.extend((now, n) for n in notices[:room])
            self._cond.notify()
        if len(notices) > room:
            self.drop(len(notices) - room, "it has stopped" if self._ended
                      else f"its queue is full ({self.limit} notices)")

    def drop(self, count: int, why: str) -> None:
        """Count `count` notices that will never be delivered, and say so (not too often)."""
        with self._cond:
            self.stats.dropped += count
            self._unlogged_drops += count
            now = time.monotonic()
            if now - self._drops_logged_at < DROP_LOG_SECONDS:
                return
            count, self._unlogged_drops, self._drops_logged_at = self._unlogged_drops, 0, now
            total = self.stats.dropped
        logger.warning("plugin %s: dropped %d notices: %s (%d dropped since start)",
                       self.plugin.name, count, why, total)

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def stop(self, drain_seconds: float = 2.0) -> None:
        """Deliver what is queued for at most `drain_seconds` more, then end."""
        with self._cond:
            self._deadline = time.monotonic() + drain_seconds
        super().stop()

    # -- the runner's own thread ----------------------------------------------------------

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def finish(self) -> None:
        self.plugin.close()
        with self._cond:
            left, self._queue = len(self._queue), deque()
            self._ended = True
        if left:
            self._drops_logged_at = float("-inf")
            self.drop(left, "still undelivered at stop")

    def work(self) -> None:
        backoff = Backoff(BACKOFF_FIRST, BACKOFF_MAX)
        while True:
            with self._cond:
                while not self._queue and not self.stopping():
                    self._cond.wait()
                if not self._queue or (self.stopping() and time.monotonic() >= self._deadline):
                    return
                batch = [notice for _, notice in list(self._queue)[:BATCH]]
            done, error = self._deliver(batch)
            with self._cond:
                for _ in range(done):
                    self._queue.popleft()
            self.stats.delivered += done
            if error is None:
                backoff.reset()
                continue
            self.stats.failures += 1
            self.stats.last_error = error
            self._expire()
            wait = backoff.next()
            if self.stats.failures == 1 or wait >= BACKOFF_MAX:
                logger.warning("plugin %s: %s; %d notices waiting, retrying in %.1fs",
                               self.plugin.name, error, self.pending(), wait)
            with self._cond:
                if not self.stopping():
                    self._cond.wait(wait)
                elif time.monotonic() < self._deadline:
                    self._cond.wait(min(wait, self._deadline - time.monotonic()))

    def _deliver(self, batch: list[Notice]) -> tuple[int, Optional[str]]:
        try:
            self.plugin.deliver(batch)
        except DeliveryError as exc:
            return exc.done, exc.reason
        except Exception as exc:  # a plugin bug must not end the thread: count, go on
            logger.exception("plugin %s: delivery failed", self.plugin.name)
            return 0, f"{type(exc).__name__}: {exc}"
        if self.stats.failures:
            logger.info("plugin %s: delivering again", self.plugin.name)
            self.stats.failures = 0
        return len(batch), None

    def _expire(self) -> None:
        """Drop the notices that have waited longer than the retry budget."""
        oldest_kept = time.monotonic() - self.retry_seconds
        expired = 0
        with self._cond:
            while self._queue and self._queue[0][0] < oldest_kept:
                self._queue.popleft()
                expired += 1
        if expired:
            self.drop(expired, f"not delivered within retrySeconds ({self.retry_seconds:g} s)")
