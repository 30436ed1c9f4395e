"""The lane's policies, without a remote: the retry backoff, the -n slots granted in turn,
and the deletion hold."""

import threading

from conftest import wait_until

from sersyncpy import deletionhold as holdmod
from sersyncpy import lane as lanemod
from sersyncpy.backoff import Backoff
from sersyncpy.deletionhold import DeletionHold
from sersyncpy.events import DELETE, UPDATE, Event
from sersyncpy.lane import Slots
from sersyncpy.push import Plan


def test_backoff_starts_at_a_second_and_is_capped():
    backoff = Backoff(*lanemod.RETRY, jitter=0.2)
    assert 0.8 <= backoff.next() <= 1.2
    for _ in range(20):
        wait = backoff.next()
    assert wait <= 60 * 1.2
    backoff.reset()
    assert backoff.next() <= 1.2


def test_partial_transfers_retry_soon():
    backoff = Backoff(*lanemod.RETRY, jitter=0.2)
    assert backoff.next(*lanemod.RETRY_PARTIAL) <= 0.12
    for _ in range(20):
        wait = backoff.next(*lanemod.RETRY_PARTIAL)
    assert wait <= 5 * 1.2


def test_slots_are_granted_first_come_first_served():
    slots = Slots(1)
    order = []
    slots.__enter__()  # the slot is taken

    def lane(name):
        with slots:
            order.append(name)

    threads = []
    for name in ("a", "b", "c"):
        threads.append(threading.Thread(target=lane, args=(name,)))
        threads[-1].start()
        wait_until(lambda: len(slots._waiting) == len(threads))  # queued in this order
    slots.__exit__(None, None, None)
    for t in threads:
        t.join(5)
    assert order == ["a", "b", "c"]


def _plan(*paths: str) -> Plan:
    events = [Event(DELETE, path) for path in paths]
    return Plan(listed=[Event(UPDATE, "kept"), *events], missing=events)


def test_deletions_are_held_until_none_new_comes_but_a_temporary_name_goes_at_once():
    hold = DeletionHold(60.0)
    p = _plan("gone.txt", "d/.f.a1B2c3")
    held = hold.take(p, stopping=False)
    assert [e.path for e in held] == ["gone.txt"]
    assert [e.path for e in p.listed] == ["kept", "d/.f.a1B2c3"]  # the rename's source
    assert hold.take(_plan("gone.txt"), stopping=True) == []  # a stop lets them go
    assert DeletionHold(0).take(_plan("x"), stopping=False) == []  # no hold at all


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_lone_deletion_settles_briefly_then_goes():
    clock = Clock()
    hold = DeletionHold(0.5, clock)
    assert [e.path for e in hold.take(_plan("gone.txt"), stopping=False)] == ["gone.txt"]
    assert hold.until == 100.0 + holdmod.DELETE_SETTLE_SECONDS
    clock.now += holdmod.DELETE_SETTLE_SECONDS
    assert hold.take(_plan("gone.txt"), stopping=False) == []  # due: it goes


def test_a_mass_deletion_waits_until_none_new_has_come_for_the_hold():
    clock = Clock()
    hold = DeletionHold(0.5, clock)
    many = [f"d/f{i}" for i in range(holdmod.DELETE_BURST + 1)]
    assert len(hold.take(_plan(*many[:3]), stopping=False)) == 3  # the first few: settling
    clock.now += 0.01
    assert len(hold.take(_plan(*many), stopping=False)) == len(many)  # a burst: held
    clock.now += 0.4
    assert hold.take(_plan(*many, "d"), stopping=False)  # still coming: held on
    clock.now += 0.4
    assert hold.take(_plan(*many, "d"), stopping=False)  # 0.4 s since "d" came
    clock.now += 0.1
    assert hold.take(_plan(*many, "d"), stopping=False) == []  # quiet for the hold: they go
    # The next lone deletion only settles again.
    assert hold.take(_plan("x"), stopping=False)
    assert hold.until == clock.now + holdmod.DELETE_SETTLE_SECONDS


def test_a_stream_of_deletions_is_held_at_most_the_longest_hold():
    clock = Clock()
    hold = DeletionHold(0.5, clock)
    paths = [f"f{i}" for i in range(holdmod.DELETE_BURST + 1)]
    hold.take(_plan(*paths), stopping=False)
    while clock.now < 100.0 + holdmod.DELETE_HOLD_MAX_SECONDS - 0.2:
        clock.now += 0.2
        paths.append(f"g{clock.now}")
        assert hold.take(_plan(*paths), stopping=False)
    clock.now += 0.2
    paths.append("last")
    assert hold.take(_plan(*paths), stopping=False) == []
