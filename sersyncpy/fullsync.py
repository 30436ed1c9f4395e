"""Full pushes of every root (-r, <crontab>, SIGUSR2): each goes into every lane as one FULL
change, so it never races the live batches of its remote.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Optional

from sersyncpy import config as configmod
from sersyncpy.events import FULL, Event

logger = logging.getLogger(__name__)


def request(lanes: Iterable, why: str) -> None:
    """Queue a full push of the root of each lane (rsync's quick check, crontabfilter
    patterns, and --delete when <delete> is on)."""
    lanes = list(lanes)
    logger.info("full sync of every root to %d remote(s): %s", len(lanes), why)
    for lane in lanes:
        lane.offer([Event(FULL, "", True)])


def crontab_minutes(cfg: configmod.Config) -> Optional[int]:
    """The <crontab> period, or None when off. sersync also switched it off when <filter> was
    on with no <crontabfilter> pattern, since its full sync ignored <filter>; ours applies
    the <filter> regexes (rules.py), so the crontab asked for runs."""
    return cfg.crontab.schedule if cfg.crontab.start else None


class Schedule:
    """Every `minutes` minutes from start (monotonic seconds); None never."""

    def __init__(self, minutes: Optional[int], now: float):
        self.period = None if minutes is None else minutes * 60.0
        self.next = None if self.period is None else now + self.period

    def due(self, now: float) -> bool:
        if self.next is None or now < self.next:
            return False
        # One push however long the process was suspended; then the next period.
        self.next = now + self.period
        return True
