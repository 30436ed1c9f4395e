"""A transfer stalled by a link outage: its rsync has done no I/O for a while, the remote did
not answer a probe meanwhile, and now does. Restarting it then converges at once instead of
when TCP's backed-off retransmission happens to fire (9 s after a 20 s outage, measured).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

# No I/O for this long and the remote is probed; probes come no closer together than this.
IDLE_SECONDS = 1.0
PROBE_EVERY_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 0.5  # a lost SYN is sent again after 1 s: try a new connection first


def io_counters(pid: int) -> Optional[tuple[int, int]]:
    """(bytes read, bytes written) by process `pid`, pipes and sockets included (rchar and
    wchar of /proc/PID/io); None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/io", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        return int(fields[b"rchar"]), int(fields[b"wchar"])
    except (OSError, KeyError, ValueError):
        return None


class Stall:
    """Watches one rsync process (`stuck`, called every fraction of a second while it runs).
    A transfer that is only slow (a receiver checksumming a large file) never meets an
    unreachable remote, so it is never restarted."""

    def __init__(self, reachable: Callable[[], bool],
                 counters: Callable[[int], Optional[tuple[int, int]]] = io_counters,
                 clock: Callable[[], float] = time.monotonic):
        self._reachable = reachable
        self._counters = counters
        self._clock = clock
        self._last: Optional[tuple[int, int]] = None
        self._since = clock()  # when the process last did I/O
        self._next_probe = 0.0
        self._outage = False  # a probe failed since the last I/O

    def stuck(self, pid: int) -> bool:
        """Whether to restart the transfer now: no I/O since a probe failed, and the remote
        answers again."""
        now = self._clock()
        counters = self._counters(pid)
        if counters is None or counters != self._last:
            self._last, self._since, self._outage = counters, now, False
            return False
        if now - self._since < IDLE_SECONDS or now < self._next_probe:
            return False
        self._next_probe = now + PROBE_EVERY_SECONDS
        if not self._reachable():
            self._outage = True
            return False
        return self._outage
