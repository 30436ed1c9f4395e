"""How long to wait before trying again, for everything that retries (a lane's pushes, its
start-up resync, a plugin's deliveries): from `first`, doubling up to `cap`, with jitter so
that lanes retrying the same dead remote do not retry in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional


@dataclass
class Backoff:
    first: float
    cap: float
    jitter: float = 0.0  # each wait is within +-jitter of its base (0.2: 80 to 120 %)
    base: float = 0.0  # the last wait's base; 0 after a success

    def next(self, first: Optional[float] = None, cap: Optional[float] = None) -> float:
        """The wait before the next try, after one more failure; `first` and `cap` replace
        the usual ones for this failure (a lane retries a partial transfer sooner)."""
        first = self.first if first is None else first
        cap = self.cap if cap is None else cap
        self.base = first if self.base <= 0 else min(self.base * 2, cap)
        if not self.jitter:
            return self.base
        return self.base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        """It worked: the next failure waits `first` again."""
        self.base = 0.0
