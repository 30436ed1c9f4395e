"""One lane in-process against a real rsync daemon: whatever goes wrong inside a push, the
lane lives on, keeps the batch pending and pushes it later (issue 12, item 5)."""

from __future__ import annotations

import pytest
from conftest import wait_until

from sersyncpy import pool, rsync
from sersyncpy.events import UPDATE, Event
from sersyncpy.pool import Lane, Slots


def test_a_lane_survives_an_unexpected_error_in_a_push(daemon, tmp_path, monkeypatch, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    target = rsync.Target(ip="127.0.0.1", module="backup", port=daemon.port, user=daemon.user,
                          password_file=str(daemon.password_file), common_params=("-a",))
    real_plan = pool.plan
    raised: list[int] = []

    def plan_that_fails_once(*args, **kwargs):
        if not raised:
            raised.append(1)
            raise PermissionError(13, "Permission denied", str(src / "private"))
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(pool, "plan", plan_that_fails_once)
    lane = Lane(str(src), target, Slots(1))
    lane.start()
    try:
        lane.offer([Event(UPDATE, "a.txt")])
        wait_until(lambda: (daemon.modules["backup"] / "a.txt").exists(), timeout=15)
        assert lane.is_alive()
        assert raised and lane.stats.failed_batches == 1 and lane.stats.failures == 0
        assert lane.lag() == (0, 0.0)
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1 and "failed unexpectedly" in tracebacks[0].getMessage()
    finally:
        lane.stop(0)
        lane.join(10)
    assert not lane.is_alive()


@pytest.fixture(autouse=True)
def _quick_backoff(monkeypatch):
    # The retry after the failed push: first backoff 0.05 s instead of 1 s.
    monkeypatch.setattr(pool, "next_backoff", lambda previous, code=10: 0.05)
