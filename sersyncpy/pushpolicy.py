"""When a lane pushes its next batch (pure; TCP's Nagle and autocork in spirit): the first
change after a quiet spell goes at once; while changes keep coming, they gather for a window
that grows with what the lane's rsync calls cost, never past the latency budget.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional

# <rsync><latency budgetMs="200"/>: the longest a change waits to be gathered with others,
# its push included. 200 ms keeps a web cluster's replicas a fraction of a second behind
# while an rsync per remote every ~0.2 s costs a few percent of a core under any churn.
DEFAULT_BUDGET = 0.2
# A window starts at this many times the cost of the lane's recent pushes, and doubles while
# changes keep arriving during pushes: rsync then runs at most ~1/(1+GAIN) of the time.
GAIN = 4.0
RECENT = 8  # pushes whose durations make the expected cost
# The share of its time rsync would run if every change went at once (the rate of offers
# times the cost of a push) past which changes gather: 1, the lane could not keep up. A
# trickle of 40 changes/s at 13-20 ms a push (0.5-0.8) goes one by one, 100/s (1.5) gathers.
STREAM_DUTY = 1.0
RATE_WEIGHT = 0.5  # of the newest interval in the offer rate's moving average
# A gathering batch goes early once no change has come for this many mean intervals between
# offers (or two pushes' cost, if longer): the stream stopped, as after a burst, and waiting
# out the window would only add latency. 5: a Poisson stream pauses that long 0.7 % of the
# time.
QUIET_INTERVALS = 5.0


@dataclass
class Cadence:
    """A lane's push history, as the policy needs it: updated by `pushed`, read by `push_at`."""

    window: float = 0.0  # how long changes gather after a push while they keep coming
    last_end: float = float("-inf")  # time.monotonic() when the last push ended
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    rate: float = 0.0  # offers (watcher reads) per second, a moving average

    @property
    def cost(self) -> float:
        """The expected duration of the next push: the mean of the recent ones."""
        return sum(self.durations) / len(self.durations) if self.durations else 0.0


def push_at(cadence: Cadence, oldest: float, budget: float,
            newest: Optional[float] = None) -> float:
    """When to push a batch whose oldest change arrived at `oldest`, and newest at
    `newest` (time.monotonic()): a time at or before `oldest` means at once.

    A change that came after the lane had been idle for longer than its window is the
    first of a new stream: at once, as an idle TCP socket sends at once. Otherwise the
    batch gathers until the window after the last push has passed, until waiting longer
    would break the budget for its oldest change, or until the stream has stopped (no
    change for QUIET_INTERVALS of its mean interval), whichever comes first.
    """
    if budget <= 0 or cadence.window <= 0 or oldest - cadence.last_end >= cadence.window:
        return oldest
    at = min(cadence.last_end + cadence.window, oldest + budget - cadence.cost)
    if newest is not None and cadence.rate > 0:
        at = min(at, newest + max(QUIET_INTERVALS / cadence.rate, 2 * cadence.cost))
    return at


def pushed(cadence: Cadence, started: float, ended: float, oldest: Optional[float],
           offers: int, budget: float) -> Cadence:
    """The cadence after a push that ran from `started` to `ended` (time.monotonic()) for a
    batch whose oldest change arrived at `oldest`; `offers`: how many came since the last
    push ended.

    Changes that come faster than pushing each at once could carry (the offer rate times
    the push's cost past STREAM_DUTY) make a stream: the window grows, from GAIN times the
    cost, doubling, up to the budget less that cost (so that the oldest change still
    arrives within the budget). Otherwise it halves, and a push that started after a quiet
    spell (its oldest change came after a window's idle time) ends it."""
    durations = deque(cadence.durations, maxlen=RECENT)
    durations.append(max(0.0, ended - started))
    after = Cadence(cadence.window, ended, durations, cadence.rate)
    elapsed = ended - cadence.last_end
    if elapsed != float("inf") and elapsed > 0:
        after.rate = (1 - RATE_WEIGHT) * cadence.rate + RATE_WEIGHT * offers / elapsed
    quiet = oldest is None or oldest - cadence.last_end >= cadence.window
    stream = after.rate * after.cost > STREAM_DUTY
    if budget <= 0 or (quiet and not stream):
        after.window = 0.0
    elif stream:
        cap = max(0.0, budget - after.cost)
        after.window = min(cap, max(2 * cadence.window, GAIN * after.cost))
    else:
        half = cadence.window / 2
        after.window = half if half >= after.cost else 0.0
    return after
