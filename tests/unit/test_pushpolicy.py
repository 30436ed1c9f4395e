"""The push policy (pushpolicy.py), as a table: when a batch goes, and how the window moves."""

from __future__ import annotations

from collections import deque

import pytest

from sersyncpy.pushpolicy import GAIN, Cadence, push_at, pushed

BUDGET = 0.2


def cadence(window: float, last_end: float, *durations: float) -> Cadence:
    return Cadence(window, last_end, deque(durations, maxlen=8))


@pytest.mark.parametrize("state, oldest, expected, why", [
    (Cadence(), 5.0, 5.0, "never pushed: at once"),
    (cadence(0.0, 4.99, 0.01), 5.0, 5.0, "no window (the last push was after a quiet spell)"),
    (cadence(0.1, 4.0, 0.01), 5.0, 5.0, "idle longer than the window: a new stream, at once"),
    (cadence(0.1, 4.95, 0.01), 5.0, 5.05, "in a stream: until the window after the last push"),
    (cadence(0.1, 4.95, 0.01), 4.9, 5.05, "arrived during the push: window from its end"),
    (cadence(0.19, 5.0, 0.05), 4.9, 5.05, "never past the budget less the push's cost"),
])
def test_push_at(state, oldest, expected, why):
    assert push_at(state, oldest, BUDGET) == pytest.approx(expected), why


def test_a_stream_that_stopped_goes_before_its_window_ends():
    state = Cadence(0.15, 5.0, deque([0.01]), rate=500.0)  # a burst: 500 offers/s
    assert push_at(state, 5.001, BUDGET) == pytest.approx(5.15)
    # The last change came at 5.02: after 2 costs (longer than 5 intervals) it has stopped.
    assert push_at(state, 5.001, BUDGET, newest=5.02) == pytest.approx(5.04)
    # A slow stream (20/s) waits 5 intervals, 0.25 s: the window ends first.
    slow = Cadence(0.15, 5.0, deque([0.01]), rate=20.0)
    assert push_at(slow, 5.001, BUDGET, newest=5.02) == pytest.approx(5.15)


def test_no_budget_always_pushes_at_once():
    assert push_at(cadence(0.1, 4.95, 0.01), 5.0, 0.0) == 5.0


STREAM, TRICKLE = 10, 0  # offers during a 20 ms interval at a 10 ms cost: 500/s, none


@pytest.mark.parametrize("before, oldest, offers, expected, why", [
    (Cadence(), 1.0, STREAM, 0.0, "the first push ever: no rate yet, no window"),
    (cadence(0.0, 0.99, 0.01), 1.0, STREAM, GAIN * 0.01, "a stream: a window of GAIN x cost"),
    (cadence(0.04, 0.99, 0.01), 1.0, STREAM, 0.08, "still coming: the window doubles"),
    (cadence(0.16, 0.99, 0.01), 1.0, STREAM, BUDGET - 0.01, "up to the budget less the cost"),
    (cadence(0.08, 0.99, 0.01), 1.0, TRICKLE, 0.04, "slower than pushes can carry: halved"),
    (cadence(0.015, 0.99, 0.01), 1.0, TRICKLE, 0.0, "halved below the cost: ended"),
    (cadence(0.08, 0.5, 0.01), 1.0, TRICKLE, 0.0, "after a quiet spell, a lone push ends it"),
])
def test_window_after_a_push(before, oldest, offers, expected, why):
    after = pushed(before, 1.0, 1.01, oldest, offers, BUDGET)
    assert after.window == pytest.approx(expected), why
    assert after.last_end == 1.01


def test_cost_is_the_mean_of_the_recent_pushes():
    state = Cadence()
    for i, seconds in enumerate([0.01, 0.03] * 10):
        state = pushed(state, float(i), i + seconds, float(i), 1, BUDGET)
    assert state.cost == pytest.approx(0.02)
    assert len(state.durations) == 8


def simulate(arrivals: list[float], cost: float, budget: float = BUDGET) -> tuple[int, float]:
    """A lane fed `arrivals` (seconds, one offer each), each push taking `cost`:
    (pushes, worst wait)."""
    state, pending, i, now, pushes, worst, counted = Cadence(), [], 0, 0.0, 0, 0.0, 0
    while i < len(arrivals) or pending:
        if not pending:
            now = max(now, arrivals[i])
        while i < len(arrivals) and arrivals[i] <= now:
            pending.append(arrivals[i])
            i += 1
        at = push_at(state, pending[0], budget)
        if at > now and i < len(arrivals) and arrivals[i] < at:
            now = arrivals[i]
            continue
        now = max(now, at)
        batch, pending = pending, []
        started, now = now, now + cost
        worst = max(worst, now - batch[0])
        offered = sum(1 for a in arrivals if a <= now)
        state = pushed(state, started, now, batch[0], offered - counted, budget)
        counted = offered
        pushes += 1
    return pushes, worst


def test_a_trickle_slower_than_the_pushes_goes_one_by_one():
    pushes, worst = simulate([i * 0.025 for i in range(200)], cost=0.016)
    assert pushes == 200 and worst == pytest.approx(0.016)


def test_a_steady_stream_gathers_within_the_budget():
    pushes, worst = simulate([i * 0.01 for i in range(3000)], cost=0.01)  # 100/s for 30 s
    assert pushes < 200  # one push per ~0.2 s, against 3,000 pushed one by one
    assert worst <= BUDGET + 0.011
