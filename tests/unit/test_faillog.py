"""The fail log: its data survives any name, its script quotes every name, its writes are
atomic, and the replay rules."""

import os
import subprocess

from conftest import assert_trees_equal

from sersyncpy import faillog, rsync
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


def test_replay_gives_each_lane_its_paths_and_a_resync_after_a_crash():
    a, b = FakeLane("/r", target(port=1)), FakeLane("/r", target(port=2))
    pending = {faillog.lane_key("/r", a.target): [Event(UPDATE, "x")]}
    assert faillog.replay(faillog.CLEAN, pending, [a, b]) == 1
    assert a.offered == [Event(UPDATE, "x")] and b.offered == []
    a.offered = []
    faillog.replay(faillog.RUNNING, pending, [a, b])
    assert a.offered == [Event(UPDATE, "x"), Event(FULL, "", True)]
    assert b.offered == [Event(FULL, "", True)]


def test_a_root_that_had_gone_is_resynced_not_paused_at_the_next_start():
    a = FakeLane("/r", target())
    pending = {faillog.lane_key("/r", a.target): [Event(DELETE, "", True)]}
    faillog.replay(faillog.CLEAN, pending, [a])
    assert a.offered == [Event(FULL, "", True)]


def test_running_the_script_by_hand_replicates_hostile_names_and_executes_nothing(
        tmp_path, daemon):
    root = tmp_path / "src"
    root.mkdir()
    for name in HOSTILE:
        (root / os.fsencode(name).decode("utf-8", "surrogateescape")).write_bytes(b"x")
    (root / "dir with space").mkdir()
    (root / "dir with space" / "in'side").write_bytes(b"y")
    stale = daemon.modules["backup"] / "deleted `touch MARKER`"
    stale.write_bytes(b"old")
    t = rsync.Target(ip="127.0.0.1", module="backup", port=daemon.port, user=daemon.user,
                     password_file=str(daemon.password_file), common_params=("-a",))
    events = [Event(UPDATE, n) for n in HOSTILE] + [
        Event(SUBTREE, "dir with space", True), Event(DELETE, "deleted `touch MARKER`")]
    script = tmp_path / "fail_log.sh"
    script.write_bytes(faillog.render(faillog.CLEAN, [faillog.LaneState(str(root), t,
                                                                        tuple(events))]))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = subprocess.run(["/bin/sh", str(script)], cwd=workdir, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert_trees_equal(root, daemon.modules["backup"])
    for place in (tmp_path, root, workdir, daemon.modules["backup"]):
        assert not (place / "MARKER").exists(), place
