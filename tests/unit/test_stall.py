"""stall.Stall: when a transfer that made no progress is restarted."""

from __future__ import annotations

from sersyncpy import stall
from sersyncpy.stall import Stall


class World:
    def __init__(self):
        self.now = 0.0
        self.io = (0, 0)
        self.up = True
        self.probes = 0

    def reachable(self):
        self.probes += 1
        return self.up

    def stall(self):
        return Stall(self.reachable, lambda pid: self.io, lambda: self.now)


def test_a_transfer_doing_io_is_never_stuck():
    w = World()
    s = w.stall()
    for i in range(50):
        w.now += 0.2
        w.io = (i, i)
        assert not s.stuck(1)
    assert w.probes == 0


def test_a_slow_transfer_to_a_remote_that_answers_is_left_alone():
    w = World()
    s = w.stall()
    for _ in range(100):  # 20 s without I/O: a receiver checksumming a huge file
        w.now += 0.2
        assert not s.stuck(1)
    assert w.probes > 0


def test_restarted_once_the_remote_answers_after_an_outage_without_progress():
    w = World()
    s = w.stall()
    w.up = False
    for _ in range(20):
        w.now += 0.2
        assert not s.stuck(1)
    w.up = True
    w.now += stall.PROBE_EVERY_SECONDS
    assert s.stuck(1)


def test_progress_after_the_outage_means_the_connection_recovered():
    w = World()
    s = w.stall()
    w.up = False
    for _ in range(20):
        w.now += 0.2
        s.stuck(1)
    w.up, w.io = True, (1, 1)
    w.now += 0.2
    assert not s.stuck(1)
    for _ in range(3):
        w.now += 0.2
        assert not s.stuck(1)  # idle again, but no outage seen since


def test_unreadable_counters_never_restart():
    s = Stall(lambda: True, lambda pid: None)
    assert not s.stuck(1)
    assert stall.io_counters(2 ** 22 + 12345) is None
