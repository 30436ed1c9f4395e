"""The fail log: its data survives any name, its writes are atomic, and the replay rules.
(Its script run by hand against a real daemon: tests/integration/test_hostile_names.py; a fail
log of another uid's, which needs root: tests/integration/test_security.py.)"""

import base64
import os
import resource

import pytest

from sersyncpy import faillog, rsync
from sersyncpy.background import AlreadyRunning
from sersyncpy.events import DELETE, FULL, RENAME, SUBTREE, UPDATE, Event

HOSTILE = [
    "plain", "sp ace", "quo'te", 'dou"ble', "back`touch MARKER`quote", "$(touch MARKER)",
    "new\nline", "tab\there", "-e sh", "--delete", "*", "?", "[", "]", "back\\slash",
    "a;touch MARKER;b", "bad\udcff\udcfe", "Кириллица", "漢字", "🙂", "#hash", ";semi",
]


class FakeLane:
    """What the writer needs of a lane: root, target, snapshot(), version, offer()."""

    def __init__(self, root, target, events=()):
        self.root, self.target = root, target
        self.events = list(events)
        self.version = 1
        self.offered = []

    def snapshot(self):
        return self.version, list(self.events)

    def offer(self, events):
        self.offered += events

    def retry_now(self):
        pass


def target(**kw):
    return rsync.Target(ip="127.0.0.1", module="backup", **kw)


def test_render_then_parse_gives_back_every_event():
    events = tuple(Event(UPDATE, n) for n in HOSTILE) + (
        Event(DELETE, "gone", True), Event(SUBTREE, "d", True), Event(FULL, "", True),
        Event(RENAME, "new name", True, "old\nname"))
    lanes = [faillog.LaneState("/srv/www", target(port=1), events),
             faillog.LaneState("/srv/other root", target(port=2), (Event(UPDATE, "x"),)),
             faillog.LaneState("/srv/idle", target(port=3), ())]
    state, pending = faillog.parse(faillog.render(faillog.CLEAN, lanes))
    assert state == faillog.CLEAN
    assert pending == {lanes[0].key: list(events), lanes[1].key: [Event(UPDATE, "x")]}


def test_a_file_that_is_not_ours_is_not_parsed():
    assert faillog.parse(b"cd /opt/tongbu && rsync -artuz ...\n") == (None, {})


def test_sersync_fail_log_is_moved_aside_not_run(tmp_path):
    path = tmp_path / "rsync_fail_log.sh"
    path.write_bytes(b"#errno 2560\ncd /opt && rsync -artuz -R ./a 127.0.0.1::m\n\n")
    assert faillog.load(str(path)) == (None, {})
    assert not path.exists()
    assert (tmp_path / "rsync_fail_log.sh.sersync").read_bytes().startswith(b"#errno")


def test_writes_are_atomic_and_leave_no_temporary_file(tmp_path):
    path = tmp_path / "fail.sh"
    faillog.write_atomically(str(path), b"one")
    faillog.write_atomically(str(path), b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["fail.sh"]


def test_writer_writes_when_a_lane_changed_and_marks_a_clean_stop(tmp_path):
    lane = FakeLane("/srv", target(), [Event(UPDATE, "a")])
    writer = faillog.FailLogWriter(str(tmp_path / "f.sh"), [lane])
    writer.write(faillog.RUNNING)
    assert not writer.changed()
    lane.version += 1
    assert writer.changed()
    lane.events = []
    writer.close()
    assert faillog.load(str(tmp_path / "f.sh")) == (faillog.CLEAN, {})


def test_replay_gives_each_lane_its_paths():
    # The resync after a crash is the start-up resync of every lane (resync.py), not here.
    a, b = FakeLane("/r", target(port=1)), FakeLane("/r", target(port=2))
    pending = {faillog.lane_key("/r", a.target): [Event(UPDATE, "x")]}
    assert faillog.replay(pending, [a, b]) == 1
    assert a.offered == [Event(UPDATE, "x")] and b.offered == []


def test_a_root_that_had_gone_is_not_paused_at_the_next_start():
    # It is back (the config check made sure), and the start-up resync sends it whole.
    a = FakeLane("/r", target())
    pending = {faillog.lane_key("/r", a.target): [Event(DELETE, "", True), Event(UPDATE, "y")]}
    faillog.replay(pending, [a])
    assert a.offered == [Event(UPDATE, "y")]


# --- what is read back is not trusted (issue 12) --------------------------------------------


def _b(text: str) -> bytes:
    return base64.b64encode(os.fsencode(text))


def _fail_log(*lines: bytes, state: bytes = b"clean") -> bytes:
    header = [b"#!/bin/sh", faillog.MAGIC, b"#S " + state,
              b"#L 0 " + _b("/srv/www") + b" " + _b("127.0.0.1::backup")]
    return b"\n".join(header + list(lines)) + b"\n"


GOOD = b"#P 0 1 0 " + _b("ok.txt")


@pytest.mark.parametrize("line", [
    b"#P 0 4 1 " + _b("../secret") + b" " + _b("d"),  # a rename out of the root
    b"#P 0 1 0 " + _b("../secret"),
    b"#P 0 1 0 " + _b("/etc/shadow"),
    b"#P 0 1 0 " + _b("a/../../b"),
    b"#P 0 1 0 " + _b("./a"),
    b"#P 0 1 0 " + _b("a//b"),
    b"#P 0 1 0 " + _b("nul\0byte"),
    b"#P 0 4 1 " + _b("renamed"),  # a RENAME without its source
    b"#P 0 1 0 " + _b("x") + b" " + _b("y"),  # a source on an UPDATE
    b"#P 0 4 1 " + _b("new") + b" " + _b("../old"),
    b"#P 0 2147483648 0 " + _b("x"),  # a kind past the compiled queue's int
    b"#P 0 99 0 " + _b("x"),
    b"#P 0 -1 0 " + _b("x"),
    b"#P 0 abc 0 " + _b("x"),
    b"#P 0 1 2 " + _b("x"),
    b"#P 0 1 0 not-base64!",
    b"#P 0 1",
    b"#P",
    b"#P 7 1 0 " + _b("x"),  # no such lane
    b"#L 1 bad! " + _b("x"),
    b"#L",
])
def test_a_damaged_or_planted_line_is_skipped_and_the_rest_replayed(line, caplog):
    state, pending = faillog.parse(_fail_log(line, GOOD))
    assert state == faillog.CLEAN
    assert pending == {"/srv/www\x00127.0.0.1::backup": [Event(UPDATE, "ok.txt")]}
    # Log text kept: parse() returns no count of what it skipped; the WARNING says it.
    assert any("fail log: skipping line" in r.getMessage() for r in caplog.records)


def test_only_a_clean_stop_counts_as_clean():
    for state in (b"clean-ish", b"", b"clean extra", b"\xff"):
        assert faillog.parse(_fail_log(GOOD, state=state))[0] == faillog.RUNNING


def test_many_bad_lines_are_counted_not_each_logged(caplog):
    faillog.parse(_fail_log(*[b"#P 0 9 0 " + _b("x")] * 1000))
    assert len(caplog.records) == faillog.BAD_LINES_NAMED + 1  # kept: how much is logged


def _write(path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


def _rejected(directory) -> list[str]:
    return [name for name in os.listdir(directory) if ".rejected." in name]


def test_a_fail_log_others_may_write_is_moved_aside_and_every_root_resynced(tmp_path):
    path = tmp_path / "fail.sh"
    _write(path, _fail_log(GOOD), 0o666)
    assert faillog.load(str(path)) == (faillog.RUNNING, {})
    assert not path.exists() and len(_rejected(tmp_path)) == 1


def test_a_symlink_at_the_fail_log_path_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere.sh"
    _write(target, _fail_log(GOOD))
    path = tmp_path / "fail.sh"
    path.symlink_to(target)
    assert faillog.load(str(path)) == (faillog.RUNNING, {})
    assert target.read_bytes() == _fail_log(GOOD)  # untouched, and the link moved aside


def test_a_fifo_at_the_fail_log_path_neither_blocks_nor_is_read(tmp_path):
    path = tmp_path / "fail.sh"
    os.mkfifo(path, 0o600)
    assert faillog.load(str(path)) == (faillog.RUNNING, {})


def test_a_huge_sparse_fail_log_is_not_read(tmp_path):
    path = tmp_path / "fail.sh"
    with open(path, "wb") as f:
        f.truncate(faillog.MAX_BYTES + 1)
    os.chmod(path, 0o600)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert faillog.load(str(path)) == (faillog.RUNNING, {})
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB


def test_a_failed_write_is_counted_and_tried_again_never_raised(tmp_path):
    path = tmp_path / "fail.sh"
    path.mkdir()  # a directory in the way: every write fails
    lane = FakeLane("/srv", target(), [Event(UPDATE, "a")])
    writer = faillog.FailLogWriter(str(path), [lane])
    assert writer.write(faillog.RUNNING) is False
    assert writer.health.error and writer.health.failures == 1
    assert writer.changed()  # so the next tick tries again
    path.rmdir()
    assert writer.write(faillog.RUNNING) is True
    assert writer.health.error == "" and writer.health.failing_since is None
    assert not writer.changed()
    assert faillog.load(str(path))[1] == {faillog.lane_key("/srv", lane.target):
                                         [Event(UPDATE, "a")]}


def test_a_second_instance_on_one_fail_log_is_refused_with_the_first_ones_pid(tmp_path):
    path = str(tmp_path / "fail.sh")
    first = faillog.lock(path)
    first.write()
    try:
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}.*{path}"):
            faillog.lock(path)
    finally:
        first.remove()
    faillog.lock(path).remove()  # free again once the first is gone
