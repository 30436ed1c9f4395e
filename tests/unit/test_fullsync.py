"""Full syncs on demand: the <crontab> schedule (fullsync.Schedule, crontab_minutes) and
fullsync.request, which SIGUSR2, -r and <crontab> use. Table tests, no clock waits."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from sersyncpy import fullsync
from sersyncpy.config import Crontab, Filter

# --------------------------------------------------------------------------- Schedule


def test_schedule_off_is_never_due():
    schedule = fullsync.Schedule(None, 100.0)
    assert schedule.period is None and schedule.next is None
    assert not any(schedule.due(t) for t in (100.0, 160.0, 1e9))


def test_schedule_is_due_every_period_from_the_start():
    schedule = fullsync.Schedule(1, 100.0)
    assert schedule.period == 60.0
    assert not schedule.due(100.0)
    assert not schedule.due(159.999)
    assert schedule.due(160.0)
    assert not schedule.due(160.0)  # once per period
    assert not schedule.due(219.999)
    assert schedule.due(220.0)


def test_schedule_after_a_long_suspension_is_due_once_then_counts_from_then():
    schedule = fullsync.Schedule(10, 0.0)
    assert schedule.due(10_000.0)  # many periods missed: one push, not a burst
    assert not schedule.due(10_000.1)
    assert schedule.next == 10_600.0
    assert not schedule.due(10_599.0)
    assert schedule.due(10_600.0)


# --------------------------------------------------------------------------- crontab_minutes


def _cfg(start=True, schedule=5, crontab_excludes=(), filter_start=False, excludes=()):
    return SimpleNamespace(crontab=Crontab(start, schedule, tuple(crontab_excludes)),
                           filter=Filter(filter_start, tuple(excludes), False))


@pytest.mark.parametrize("cfg, minutes", [
    (_cfg(start=False), None),
    (_cfg(), 5),
    (_cfg(schedule=1), 1),
    (_cfg(filter_start=True, excludes=(r"(.*)\.gz",), crontab_excludes=("*.gz",)), 5),
    (_cfg(filter_start=True), 5),  # the filter on, but nothing excluded
    (_cfg(filter_start=False, excludes=(r"(.*)\.gz",)), 5),  # excludes of a filter that is off
    (_cfg(start=False, filter_start=True, excludes=(r"(.*)\.gz",)), None),
])
def test_crontab_minutes(cfg, minutes, caplog):
    with caplog.at_level(logging.WARNING):
        assert fullsync.crontab_minutes(cfg) == minutes
    assert not caplog.records  # kept: no warning either (sersync's switch-off said one)


def test_crontab_with_filter_excludes_but_no_crontabfilter_runs(caplog):
    # sersync switched it off, as its full sync ignored <filter>; ours applies the regexes.
    cfg = _cfg(filter_start=True, excludes=(r"(.*)\.gz",))
    with caplog.at_level(logging.WARNING):
        assert fullsync.crontab_minutes(cfg) == cfg.crontab.schedule
    assert not caplog.records


# --------------------------------------------------------------------------- request


def test_request_offers_one_full_event_of_the_root_to_every_lane():
    class Lane:
        def __init__(self):
            self.offered = []

        def offer(self, events, seq=0):
            self.offered.append(events)

    lanes = [Lane(), Lane()]
    fullsync.request(lanes, "test")
    for lane in lanes:
        ((event,),) = lane.offered
        assert (event.kind, event.path, event.is_dir) == (fullsync.FULL, "", True)
