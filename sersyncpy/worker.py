"""The one shape of every long-lived thread (the watcher, each lane and its resync, the plugin
runner, the fail-log writer): started once, asked to stop with stop(), and, if an error nobody
foresaw ends it, logged once with its traceback; the main loop sees it gone and exits.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


class Worker(threading.Thread):
    """A daemon thread whose work() runs until stopping() says so. Subclasses that wait on a
    Condition override wake() to notify it, so that stop() is seen at once."""

    def __init__(self, name: str):
        super().__init__(name=name, daemon=True)
        self._stop_asked = threading.Event()

    def stopping(self) -> bool:
        return self._stop_asked.is_set()

    def stop(self) -> None:
        """Ask the thread to end (after what it does on the way out: drain, a last write)."""
        self._stop_asked.set()
        self.wake()

    def wake(self) -> None:
        """Make a waiting work() look at stopping() again."""

    def rest(self, seconds: float) -> bool:
        """Wait `seconds`, or less if asked to stop; True when asked to stop."""
        return self._stop_asked.wait(seconds)

    def work(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Runs last in the thread, however work() ended."""

    def run(self) -> None:
        try:
            self.work()
        except Exception:  # logged here, once; not raised again (the traceback would repeat)
            logger.exception("%s ended unexpectedly", self.name)
        finally:
            self.finish()
