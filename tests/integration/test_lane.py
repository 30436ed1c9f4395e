"""One lane in-process against a real rsync daemon: whatever goes wrong inside a push, the
lane lives on, keeps the batch pending and pushes it later (issue 12, item 5)."""

from __future__ import annotations

import os

import pytest
from conftest import wait_until

from sersyncpy import lane as lanemod
from sersyncpy import push, rsync
from sersyncpy.diskstate import Unreadable
from sersyncpy.events import SUBTREE, UPDATE, Event
from sersyncpy.lane import Lane, Slots


def test_a_lane_survives_an_unexpected_error_in_a_push(daemon, tmp_path, monkeypatch, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    target = rsync.Target(ip="127.0.0.1", module="backup", port=daemon.port, user=daemon.user,
                          password_file=str(daemon.password_file), common_params=("-a",))
    real_plan = push.plan
    raised: list[int] = []

    def plan_that_fails_once(*args, **kwargs):
        if not raised:
            raised.append(1)
            raise PermissionError(13, "Permission denied", str(src / "private"))
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(push, "plan", plan_that_fails_once)
    lane = Lane(str(src), target, Slots(1))
    lane.start()
    try:
        lane.offer([Event(UPDATE, "a.txt")])
        wait_until(lambda: (daemon.modules["backup"] / "a.txt").exists(), timeout=15)
        # The file is there once rsync wrote it; the lane counts the success just after.
        wait_until(lambda: lane.stats.failures == 0, timeout=5)
        assert lane.is_alive()
        assert raised and lane.stats.failed_batches == 1 and lane.stats.failures == 0
        assert lane.lag() == (0, 0.0)
        # Log text kept: the unexpected error's traceback reaches the log, once.
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1 and "failed unexpectedly" in tracebacks[0].getMessage()
    finally:
        lane.stop(0)
        lane.join(10)
    assert not lane.is_alive()


@pytest.fixture(autouse=True)
def _quick_backoff(monkeypatch):
    # The retry after the failed push: first backoff 0.05 s instead of 1 s.
    monkeypatch.setattr(lanemod, "RETRY", (0.05, 0.05))


def test_an_excluded_file_that_raced_a_directory_push_is_taken_back(daemon, tmp_path,
                                                                     monkeypatch):
    # Unpacking an archive into a new directory: the lane walks it for the paths the
    # <filter> regexes leave out, then rsync walks it; a b.gz created in between went with
    # it. The push takes it back (issue 13 item 2: the regexes apply to every path pushed).
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for name in ("a.txt", "b.gz", "old.gz"):
        (src / "d" / name).write_bytes(name.encode())
    module = daemon.modules["backup"]
    (module / "d").mkdir(parents=True)
    (module / "d" / "old.gz").write_bytes(b"on the replica already: stays")
    target = rsync.Target(ip="127.0.0.1", module="backup", port=daemon.port, user=daemon.user,
                          password_file=str(daemon.password_file), common_params=("-a",))
    real_walk = push.excluded_below
    walks: list[list[str]] = []

    def walk_that_misses_b_once(*args):
        found = real_walk(*args)
        walks.append(found)
        return [path for path in found if path != "d/b.gz"] if len(walks) == 1 else found

    monkeypatch.setattr(push, "excluded_below", walk_that_misses_b_once)
    stats = push.LaneStats()
    pusher = push.Pusher(str(src), target, stats, Unreadable(str(src)),
                         excluded=lambda rel, is_dir: rel.endswith(".gz"))
    done = pusher.push([Event(SUBTREE, "d", True)], lambda: True, lambda p: [])
    assert done.failed == [] and len(walks) == 2
    assert sorted(os.listdir(module / "d")) == ["a.txt", "old.gz"]
    assert (module / "d" / "old.gz").read_bytes() == b"on the replica already: stays"
