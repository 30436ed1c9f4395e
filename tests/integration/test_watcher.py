"""The watcher alone, on real inotify and real fanotify: what each kind of change becomes.
Every test runs under both sources (fanotify is skipped, with the kernel's reason, where it
cannot run); what only one of them has (watches, cached handles) is tested for it alone."""

import logging
import os
import re
import subprocess
import threading

import pytest
from conftest import wait_until

from integration.conftest import unmount
from sersyncpy import fanwatch
from sersyncpy.errors import SersyncpyError
from sersyncpy.events import DELETE, FULL, RENAME, SUBTREE, UPDATE, Event
from sersyncpy.rules import Rules
from sersyncpy.watcher import Watcher

FANOTIFY_UNAVAILABLE = fanwatch.probe()


@pytest.fixture(params=["inotify", "fanotify"])
def kind(request):
    """The watcher's source; fanotify skipped, saying why, where the kernel refuses it."""
    if request.param == "fanotify" and FANOTIFY_UNAVAILABLE:
        pytest.skip(f"fanotify cannot run here: {FANOTIFY_UNAVAILABLE}")
    return request.param


def watches(w, count):
    """Under inotify, wait until `count` directories are watched; fanotify has no watches."""
    if w.kind == "inotify":
        wait_until(lambda: w.watch_count == count)


class Recorder:
    def __init__(self):
        self.events: list[tuple[int, Event]] = []
        self.lock = threading.Lock()

    def __call__(self, index, events):
        with self.lock:
            self.events += [(index, e) for e in events]

    def seen(self):
        with self.lock:
            return [e for _, e in self.events]

    def wait_for(self, *expected, timeout=5):
        wait_until(lambda: all(e in self.seen() for e in expected), timeout=timeout,
                   message=f"expected {expected}; seen {self.seen()}")


@pytest.fixture
def watch(tmp_path, kind):
    """watch(rules=None) -> (root, recorder, watcher); it runs until the test ends."""
    started = []

    def start(rules=None, roots=None, unwatched_resync=60.0):
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        rec = Recorder()
        w = Watcher(roots or [str(root)], rules or Rules(attrib=True), rec, use=kind,
                    unwatched_resync=unwatched_resync)
        w.watch_all()
        w.start()
        started.append(w)
        return root, rec, w

    yield start
    for w in started:
        w.stop()
        w.join(5)


def test_events_queued_before_the_stop_are_handed_on(tmp_path, kind):
    """A change made just before SIGTERM is not lost with the kernel's queue: asked to stop
    before its first read, the watcher still reads what is queued and hands it on."""
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    rec = Recorder()
    w = Watcher([str(root)], Rules(), rec, use=kind)
    w.watch_all()
    for i in range(300):
        (root / f"d/f{i}").write_bytes(b"x")
    w.stop()
    w.start()
    w.join(5)
    assert not w.is_alive()
    assert {e.path for e in rec.seen()} == {f"d/f{i}" for i in range(300)}


def test_a_new_file_is_one_update(watch):
    root, rec, _ = watch()
    (root / "f").write_text("x")
    rec.wait_for(Event(UPDATE, "f"))
    assert Event(UPDATE, "f") in rec.seen()


def test_a_new_directory_is_watched_then_sent_whole(watch):
    root, rec, w = watch()
    os.makedirs(root / "a/b/c")
    (root / "a/b/c/f").write_text("x")
    rec.wait_for(Event(SUBTREE, "a", True))
    watches(w, 4)
    (root / "a/b/c/g").write_text("later")
    rec.wait_for(Event(UPDATE, "a/b/c/g"))


def test_a_rename_inside_the_tree_is_one_event_and_keeps_watching(watch):
    root, rec, _ = watch()
    os.makedirs(root / "old/sub")
    (root / "file").write_text("x")
    rec.wait_for(Event(SUBTREE, "old", True))
    os.rename(root / "old", root / "new")
    os.rename(root / "file", root / "file2")
    rec.wait_for(Event(RENAME, "new", True, "old"), Event(RENAME, "file2", False, "file"))
    (root / "new/sub/inside").write_text("x")
    rec.wait_for(Event(UPDATE, "new/sub/inside"))


def test_moving_out_is_a_delete_and_stops_watching(watch, tmp_path):
    root, rec, w = watch()
    os.makedirs(root / "d/sub")
    rec.wait_for(Event(SUBTREE, "d", True))
    watches(w, 3)
    os.rename(root / "d", tmp_path / "outside")
    rec.wait_for(Event(DELETE, "d", True))
    watches(w, 1)
    (tmp_path / "outside/sub/late").write_text("x")
    (root / "marker").write_text("x")
    rec.wait_for(Event(UPDATE, "marker"))
    assert not [e for e in rec.seen() if "late" in e.path]


def unmount_and_wait(w, rec, root, rel):
    """Unmount root/rel; wait until the watcher resynced it and counts nothing unwatched."""
    fulls = rec.seen().count(Event(FULL, rel, True))
    unmount(root / rel)
    wait_until(lambda: rec.seen().count(Event(FULL, rel, True)) > fulls)
    wait_until(lambda: w.counts()[0][1] == 0)


def test_a_file_system_mounted_then_unmounted_below_the_root_is_followed(watch, tmp_path,
                                                                         tmpfs):
    """No inotify or fanotify event tells of a mount: the mount table does. What shows on the
    mount point is then resynced whole and, under inotify, watched; fanotify does not mark a
    file system mounted after the start, but resyncs it whole each period and counts it as
    unwatched. What shows again after the unmount is watched as before."""
    (tmp_path / "root/m/sub").mkdir(parents=True)
    root, rec, w = watch(unwatched_resync=0.5)
    tmpfs(root / "m", "1m")
    rec.wait_for(Event(FULL, "m", True))
    if w.kind == "inotify":
        os.makedirs(root / "m/new")
        (root / "m/new/f").write_text("x")
        (root / "m/g").write_text("x")
        rec.wait_for(Event(UPDATE, "m/g"), Event(SUBTREE, "m/new", True))
        (root / "m/new/later").write_text("x")
        rec.wait_for(Event(UPDATE, "m/new/later"))
        assert w.counts()[0][1] == 0
    else:
        wait_until(lambda: rec.seen().count(Event(FULL, "m", True)) >= 3)
        assert w.counts() == [(0, 1)]
    unmount_and_wait(w, rec, root, "m")
    (root / "m/sub/under").write_text("x")
    rec.wait_for(Event(UPDATE, "m/sub/under"))


def test_a_file_system_mounted_after_the_start_can_be_unmounted(watch, tmp_path, tmpfs):
    """The watcher holds nothing open on a file system mounted after it started."""
    root, rec, _ = watch()
    mounted = tmpfs(root / "m", "1m")
    rec.wait_for(Event(FULL, "m", True))
    result = subprocess.run(["umount", str(mounted)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_file_system_below_a_renamed_directory_is_followed(watch, tmp_path, tmpfs):
    tmpfs(tmp_path / "root/a/m", "1m")
    root, rec, w = watch()
    try:
        os.rename(root / "a", root / "b")
        rec.wait_for(Event(RENAME, "b", True, "a"))
        (root / "b/m/f").write_text("x")
        rec.wait_for(Event(UPDATE, "b/m/f"))
        # The mount table is read again after a directory moved: the mount moved, it did not
        # go (no resync of a path that is no more) nor come (still watched, not counted).
        rec.wait_for(Event(FULL, "b/m", True))
        assert Event(FULL, "a/m", True) not in rec.seen()
        assert w.counts()[0][1] == 0
        (root / "b/m/g").write_text("x")
        rec.wait_for(Event(UPDATE, "b/m/g"))
    finally:  # the fixture unmounts a/m, which the rename moved
        if os.path.ismount(root / "b/m"):
            subprocess.run(["umount", "--lazy", str(root / "b/m")], check=True)


def test_a_mount_stacked_on_another_then_unmounted_gives_the_one_below_back(watch, tmp_path,
                                                                             tmpfs):
    tmpfs(tmp_path / "root/m", "1m")
    root, rec, w = watch(unwatched_resync=0.5)
    top = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root / "m")])
    assert top.returncode == 0
    try:
        rec.wait_for(Event(FULL, "m", True))
        (root / "m/on-top").write_text("x")
        if w.kind == "inotify":
            rec.wait_for(Event(UPDATE, "m/on-top"))
        else:
            wait_until(lambda: w.counts() == [(0, 1)])
    except BaseException:
        unmount(root / "m")  # the fixture unmounts the one below
        raise
    unmount_and_wait(w, rec, root, "m")
    (root / "m/below").write_text("x")
    rec.wait_for(Event(UPDATE, "m/below"))


def test_a_mount_moved_is_followed_and_so_is_the_directory_it_left(watch, tmp_path, tmpfs):
    (tmp_path / "root/p1/sub").mkdir(parents=True)
    (tmp_path / "root/p2").mkdir()
    root, rec, w = watch(unwatched_resync=0.5)
    tmpfs(root / "p1", "1m")
    rec.wait_for(Event(FULL, "p1", True))
    moved = subprocess.run(["mount", "--move", str(root / "p1"), str(root / "p2")])
    assert moved.returncode == 0
    try:
        rec.wait_for(Event(FULL, "p2", True))
        wait_until(lambda: rec.seen().count(Event(FULL, "p1", True)) >= 2)
        (root / "p2/f").write_text("x")
        if w.kind == "inotify":
            rec.wait_for(Event(UPDATE, "p2/f"))
        else:
            wait_until(lambda: w.counts() == [(0, 1)])
        # What p1 shows again is the directory below, watched under its own name wherever
        # it goes.
        os.rename(root / "p1", root / "p3")
        rec.wait_for(Event(RENAME, "p3", True, "p1"))
        (root / "p3/sub/g").write_text("x")
        rec.wait_for(Event(UPDATE, "p3/sub/g"))
    finally:
        unmount(root / "p2")


def test_a_file_bind_mounted_on_a_file_is_sent_and_sent_again_after(watch, tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root/f").write_text("below")
    (tmp_path / "other").write_text("the bind's")
    root, rec, _ = watch()
    if subprocess.run(["mount", "--bind", str(tmp_path / "other"), str(root / "f")]).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        rec.wait_for(Event(UPDATE, "f"))
    finally:
        unmount(root / "f")
    wait_until(lambda: rec.seen().count(Event(UPDATE, "f")) == 2)


def test_inotify_a_bind_mount_there_at_the_start_then_unmounted_leaves_all_watched(tmp_path):
    # Whichever of the two places the first walk reached keeps the watch; once the bind is
    # gone, the other place is watched again within a period.
    root = tmp_path / "root"
    (root / "b/sub").mkdir(parents=True)
    (root / "a").mkdir()
    if subprocess.run(["mount", "--bind", str(root / "b"), str(root / "a")]).returncode:
        pytest.skip("cannot bind-mount here")
    rec = Recorder()
    try:
        w = Watcher([str(root)], Rules(), rec, use="inotify", unwatched_resync=0.5)
        w.watch_all()
        w.start()
        try:
            assert w.counts()[0][1] == 1  # a or b: the other place, not walked
            unmount(root / "a")
            wait_until(lambda: w.counts()[0][1] == 0)
            (root / "b/sub/x").write_text("x")
            rec.wait_for(Event(UPDATE, "b/sub/x"))
        finally:
            w.stop()
            w.join(5)
    finally:  # (os.path.ismount does not see a bind mount of the same file system)
        subprocess.run(["umount", "--lazy", str(root / "a")], capture_output=True)


def test_a_bind_mount_of_a_watched_directory_does_not_take_its_events(watch, tmp_path):
    """A second mount of a watched file system made below the root is resynced whole each
    period and counted as unwatched; the directory it shows keeps its own events, under its
    own path, during and after it."""
    (tmp_path / "root/a/sub").mkdir(parents=True)
    (tmp_path / "root/b").mkdir()
    root, rec, w = watch(unwatched_resync=0.5)
    if subprocess.run(["mount", "--bind", str(root / "a"), str(root / "b")]).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        wait_until(lambda: rec.seen().count(Event(FULL, "b", True)) >= 2)
        assert w.counts()[0][1] == 1
        (root / "a/sub/during").write_text("x")
        rec.wait_for(Event(UPDATE, "a/sub/during"))
    finally:
        unmount(root / "b")
    wait_until(lambda: w.counts()[0][1] == 0)
    (root / "a/sub/after").write_text("x")
    (root / "a/top").write_text("x")
    rec.wait_for(Event(UPDATE, "a/sub/after"), Event(UPDATE, "a/top"))
    assert not [e for e in rec.seen() if e.kind == UPDATE and e.path.startswith("b/")]


def test_moving_in_is_a_subtree_and_is_watched(watch, tmp_path):
    root, rec, _ = watch()
    os.makedirs(tmp_path / "incoming/sub")
    os.rename(tmp_path / "incoming", root / "incoming")
    rec.wait_for(Event(SUBTREE, "incoming", True))
    (root / "incoming/sub/new").write_text("x")
    rec.wait_for(Event(UPDATE, "incoming/sub/new"))


def test_attrib_is_a_metadata_update_only_when_asked(watch, tmp_path):
    root, rec, _ = watch(Rules(attrib=True))
    os.makedirs(root / "d")
    rec.wait_for(Event(SUBTREE, "d", True))
    os.chmod(root / "d", 0o700)
    rec.wait_for(Event(UPDATE, "d", True))
    (root / "d/after").write_text("x")  # sersync would have dropped d's watch here
    rec.wait_for(Event(UPDATE, "d/after"))


def test_attrib_off_pushes_no_metadata_change(watch):
    root, rec, _ = watch(Rules(attrib=False))
    (root / "f").write_text("x")
    rec.wait_for(Event(UPDATE, "f"))
    os.chmod(root / "f", 0o600)
    (root / "marker").write_text("x")
    rec.wait_for(Event(UPDATE, "marker"))
    assert rec.seen().count(Event(UPDATE, "f")) == 1


def test_symlinks_and_hard_links_are_pushed_though_they_never_close(watch):
    root, rec, _ = watch()
    (root / "t").write_text("x")
    os.symlink("t", root / "link")
    os.link(root / "t", root / "hard")
    rec.wait_for(Event(UPDATE, "link"), Event(UPDATE, "hard"))


def test_temp_files_dropped_dotfiles_optional(watch, tmp_path):
    root, rec, _ = watch(Rules(keep_dotfiles=False))
    for name in (".hidden", "backup~", "4913", "real"):
        (root / name).write_text("x")
    os.makedirs(root / ".dotdir")  # directories are kept, as in sersync
    rec.wait_for(Event(UPDATE, "real"), Event(SUBTREE, ".dotdir", True))
    assert {e.path for e in rec.seen()} == {"real", ".dotdir"}


def test_keep_dotfiles(watch):
    root, rec, _ = watch(Rules(keep_dotfiles=True))
    (root / ".htaccess").write_text("x")
    rec.wait_for(Event(UPDATE, ".htaccess"))


def test_an_rsync_temporary_file_is_never_pushed_but_its_rename_away_is(watch):
    # As rsync's receiver does it: write .f.XXXXXX, close, rename over f.
    root, rec, _ = watch(Rules(keep_dotfiles=True))
    (root / ".f.a1B2c3").write_text("half, then whole")
    os.rename(root / ".f.a1B2c3", root / "f")
    (root / "marker").write_text("x")
    rec.wait_for(Event(UPDATE, "marker"))
    seen = rec.seen()
    assert Event(UPDATE, ".f.a1B2c3") not in seen
    # The rename: the temporary name goes (a directory push may have copied it), f arrives.
    assert Event(RENAME, "f", False, ".f.a1B2c3") in seen, seen


def test_excluded_directories_are_not_watched(watch, tmp_path):
    root = tmp_path / "root"
    os.makedirs(root / "cache/deep")
    os.makedirs(root / "kept")
    rules = Rules(excludes=(re.compile(r"^cache/*"), re.compile(r"(.*)\.gz")))
    root, rec, w = watch(rules)
    if w.kind == "inotify":
        assert w.watch_count == 2  # the root and kept/
    (root / "cache/deep/x").write_text("x")
    (root / "kept/a.gz").write_text("x")
    (root / "kept/a.txt").write_text("x")
    rec.wait_for(Event(UPDATE, "kept/a.txt"))
    assert [e.path for e in rec.seen()] == ["kept/a.txt"]


def test_new_rules_apply_from_the_next_event_and_to_the_directories_watched(watch, tmp_path):
    # A reload hands the watcher new rules (use_rules): <filter> regexes added take effect
    # on the next event, and a directory they exclude is not watched when its parent is.
    root, rec, w = watch()
    (root / "a.gz").write_text("x")
    rec.wait_for(Event(UPDATE, "a.gz"))
    w.use_rules(Rules(excludes=(re.compile(r".*/cache"), re.compile(r"(.*)\.gz"))))
    os.makedirs(tmp_path / "incoming/cache/deep")
    os.rename(tmp_path / "incoming", root / "incoming")
    (root / "b.gz").write_text("x")
    (root / "marker").write_text("x")
    rec.wait_for(Event(UPDATE, "marker"))
    assert [e.path for e in rec.seen()] == ["a.gz", "incoming", "marker"]
    if w.kind == "inotify":
        assert w.watch_count == 2  # the root and incoming/, not incoming/cache nor below


def test_overflow_resyncs_every_root_and_says_so(watch, tmp_path, caplog):
    root, rec, w = watch()
    os.makedirs(root / "made-while-blind")
    overflow = (fanwatch.Q_OVERFLOW, None, "", "", 0)  # as either source reads one
    with caplog.at_level(logging.WARNING, logger="sersyncpy.watcher"):
        w.process([overflow])
    assert Event(FULL, "", True) in rec.seen()
    assert w.overflows == 1
    # Log text kept: the WARNING that names the repair (rescan, resync) is the product.
    assert "overflow" in caplog.text


def test_deleting_a_tree_is_a_delete_of_it(watch):
    root, rec, w = watch()
    os.makedirs(root / "t/sub")
    (root / "t/sub/f").write_text("x")
    rec.wait_for(Event(SUBTREE, "t", True))
    os.unlink(root / "t/sub/f")
    os.rmdir(root / "t/sub")
    os.rmdir(root / "t")
    rec.wait_for(Event(DELETE, "t", True))
    watches(w, 1)


def test_several_roots_report_their_index(tmp_path, kind):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rec = Recorder()
    w = Watcher([str(a), str(b)], Rules(), rec, use=kind)
    w.watch_all()
    w.start()
    try:
        (b / "in-b").write_text("x")
        (a / "in-a").write_text("x")
        wait_until(lambda: len(rec.events) >= 2)
        assert sorted(rec.events) == [(0, Event(UPDATE, "in-a")), (1, Event(UPDATE, "in-b"))]
    finally:
        w.stop()
        w.join(5)


def test_a_directory_created_then_renamed_before_its_event_is_read_is_still_watched(tmp_path):
    # mkdir -p old/sub && mv old new: the CREATE of sub is read after the rename happened,
    # so its path "old/sub" no longer exists when the watcher tries to watch it.
    root = tmp_path / "root"
    root.mkdir()
    rec = Recorder()
    w = Watcher([str(root)], Rules(), rec, use="inotify")
    w.watch_all()
    try:
        os.mkdir(root / "old")
        w.process(w._read(1000))  # watches old
        os.mkdir(root / "old/sub")
        os.rename(root / "old", root / "new")
        w.process(w._read(1000))  # CREATE old/sub, then the rename
        (root / "new/sub/inside").write_text("x")
        w.process(w._read(1000))
        assert Event(UPDATE, "new/sub/inside") in rec.seen()
    finally:
        w.finish()


def test_losing_the_root_forgets_every_watch_below_it(tmp_path):
    root = tmp_path / "root"
    os.makedirs(root / "a/b")
    rec = Recorder()
    w = Watcher([str(root)], Rules(), rec, use="inotify")
    try:
        assert w.watch_all() == 3
        out = []
        w._root_lost(w.table.roots[0], out, "was replaced")
        assert w.watch_count == 0
        assert [e for _, e in out] == [Event(DELETE, "", True)]
    finally:
        w.finish()


# --- fanotify alone: what only a mark per file system has --------------------------------

fanotify_only = pytest.mark.skipif(bool(FANOTIFY_UNAVAILABLE),
                                   reason=f"fanotify cannot run here: {FANOTIFY_UNAVAILABLE}")


@pytest.fixture
def fan(tmp_path):
    """A fanotify Watcher on tmp_path/root, not started: the test reads with step()."""
    root = tmp_path / "root"
    root.mkdir()
    rec = Recorder()
    w = Watcher([str(root)], Rules(attrib=True), rec, use="fanotify")
    w.watch_all()

    def step():
        while True:
            raw = w._read(100)
            if not raw:
                return rec.seen()
            w.process(raw)

    yield root, rec, w, step
    w.finish()


@fanotify_only
def test_fanotify_merged_events_of_one_name_follow_the_disk(fan):
    # Unread, the kernel merges rm f + touch f into one CREATE|DELETE: the disk orders them.
    root, rec, _, step = fan
    (root / "gone").write_text("x")
    (root / "back").write_text("x")
    step()
    os.unlink(root / "back")
    (root / "back").write_text("again")
    (root / "gone").write_text("y")
    os.unlink(root / "gone")
    seen = step()
    back = [e for e in seen if e.path == "back"]
    gone = [e for e in seen if e.path == "gone"]
    assert back[-1] == Event(UPDATE, "back"), seen
    assert gone[-1] == Event(DELETE, "gone"), seen


@fanotify_only
def test_fanotify_drops_what_happens_outside_the_roots(fan, tmp_path):
    root, rec, _, step = fan
    os.makedirs(tmp_path / "elsewhere/deep")
    (tmp_path / "elsewhere/deep/f").write_text("x")
    (tmp_path / "rootless").write_text("x")  # a sibling whose name starts like the root's
    (root / "marker").write_text("x")
    assert step() == [Event(UPDATE, "marker")]


@fanotify_only
def test_fanotify_a_directory_seen_outside_then_moved_in_is_followed(fan, tmp_path):
    # Its handle was cached as outside; the move in must not leave it there.
    root, rec, _, step = fan
    os.makedirs(tmp_path / "x/sub")
    (tmp_path / "x/sub/before").write_text("x")
    assert step() == []
    os.rename(tmp_path / "x", root / "x")
    step()
    (root / "x/sub/after").write_text("x")
    seen = step()
    assert Event(SUBTREE, "x", True) in seen and Event(UPDATE, "x/sub/after") in seen, seen


@fanotify_only
def test_fanotify_a_renamed_directory_is_followed_under_its_new_name(fan):
    root, rec, _, step = fan
    os.makedirs(root / "a/b")
    (root / "a/b/f").write_text("x")  # a/b's handle is cached as a/b
    step()
    os.rename(root / "a", root / "c")
    (root / "c/b/g").write_text("x")
    seen = step()
    assert Event(RENAME, "c", True, "a") in seen and Event(UPDATE, "c/b/g") in seen, seen


@fanotify_only
def test_fanotify_a_new_nested_tree_needs_no_watch_nor_scan(fan):
    root, rec, w, step = fan
    deep = root
    for i in range(200):
        deep = deep / f"d{i}"
        os.mkdir(deep)
        (deep / "f").write_text("x")
    seen = step()
    assert w.watch_count == 0
    assert Event(SUBTREE, "d0", True) in seen
    # Each file is seen at its own path, though nothing was ever listed.
    assert sum(1 for e in seen if e.kind == UPDATE and e.path.endswith("/f")) == 200


@fanotify_only
def test_fanotify_without_rename_events_moves_are_a_delete_and_an_arrival(tmp_path,
                                                                          monkeypatch):
    # Linux 5.9-5.16 have no FAN_RENAME: a move is told as two unpaired events.
    monkeypatch.setattr(fanwatch.FanotifySource, "_try_rename", lambda self: False)
    root = tmp_path / "root"
    os.makedirs(root / "d/sub")
    (root / "f").write_text("x")
    rec = Recorder()
    w = Watcher([str(root)], Rules(), rec, use="fanotify")
    w.watch_all()
    w.start()
    try:
        os.rename(root / "d", root / "e")
        os.rename(root / "f", root / "g")
        (root / "e/sub/later").write_text("x")
        rec.wait_for(Event(DELETE, "d", True), Event(SUBTREE, "e", True),
                     Event(DELETE, "f"), Event(UPDATE, "g"), Event(UPDATE, "e/sub/later"))
        assert "moves unpaired" in w.table.describe()
    finally:
        w.stop()
        w.join(5)


@fanotify_only
def test_fanotify_a_path_too_long_to_read_back_resyncs_every_root(fan):
    root, rec, _, step = fan
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(20):  # 20 x 250 bytes: beyond PATH_MAX (4096)
            os.mkdir("n" * 250, dir_fd=fd)
            inner = os.open("n" * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        step()
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("x")
    finally:
        os.close(fd)
    assert Event(FULL, "", True) in step()


@fanotify_only
def test_fanotify_the_root_deleted_is_the_root_lost(fan):
    root, rec, _, step = fan
    os.rmdir(root)
    assert Event(DELETE, "", True) in step()


def test_fanotify_forced_where_it_cannot_run_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(fanwatch, "_capable", lambda: False)
    with pytest.raises(SersyncpyError, match="the fanotify watcher cannot run: it needs root"):
        Watcher([str(tmp_path)], Rules(), Recorder(), use="fanotify")
    # auto falls back to inotify
    w = Watcher([str(tmp_path)], Rules(), Recorder(), use="auto")
    try:
        assert w.kind == "inotify"
    finally:
        w.finish()


@fanotify_only
def test_auto_uses_fanotify_only_on_a_file_system_no_other_user_writes(tmp_path, caplog):
    # tmp_path is on /tmp's file system: another local user could flood it with changes.
    with caplog.at_level(logging.INFO, logger="sersyncpy.watcher"):
        w = Watcher([str(tmp_path)], Rules(), Recorder(), use="auto")
    try:
        assert w.kind == "inotify"
        assert "is on the file system of /tmp" in caplog.text
    finally:
        w.finish()
    own = tmp_path / "own"
    own.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(own)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        w = Watcher([str(own)], Rules(), Recorder(), use="auto")
        try:
            assert w.kind == "fanotify"
        finally:
            w.finish()
        # A plugin keeps inotify, even there.
        w = Watcher([str(own)], Rules(), Recorder(), use="auto", plugin=True)
        try:
            assert w.kind == "inotify"
        finally:
            w.finish()
    finally:
        subprocess.run(["umount", "--lazy", str(own)], check=True)


@fanotify_only
def test_fanotify_a_root_that_is_a_bind_mount_is_followed_under_its_own_path(tmp_path):
    # Handles are read back through the root's own mount, not the file system's outer one
    # (which would name the bind's source, outside the root).
    source, root = tmp_path / "source", tmp_path / "root"
    source.mkdir()
    root.mkdir()
    if subprocess.run(["mount", "--bind", str(source), str(root)]).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        rec = Recorder()
        w = Watcher([str(root)], Rules(), rec, use="fanotify")
        w.watch_all()
        w.start()
        try:
            os.makedirs(root / "d")
            (root / "d/f").write_text("x")
            rec.wait_for(Event(SUBTREE, "d", True), Event(UPDATE, "d/f"))
        finally:
            w.stop()
            w.join(5)
    finally:
        subprocess.run(["umount", "--lazy", str(root)], check=True)


@fanotify_only
def test_fanotify_a_bind_mount_made_below_the_root_is_resynced_and_counted(tmp_path):
    # A second mount of a marked file system cannot be read back under its own path: it is
    # counted as unwatched and resynced whole every unwatched-resync period, as inotify's
    # directories over the watch limit are, until it is unmounted.
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "b").mkdir(parents=True)
    outside.mkdir()
    rec = Recorder()
    w = Watcher([str(root)], Rules(), rec, use="fanotify", unwatched_resync=0.5)
    w.watch_all()
    w.start()
    try:
        if subprocess.run(["mount", "--bind", str(outside), str(root / "b")]).returncode:
            pytest.skip("cannot bind-mount here")
        try:
            wait_until(lambda: rec.seen().count(Event(FULL, "b", True)) >= 3)
            assert w.counts() == [(0, 1)]
        finally:
            unmount(root / "b")
        wait_until(lambda: w.counts() == [(0, 0)])
        seen = rec.seen().count(Event(FULL, "b", True))
        (root / "marker").write_text("x")
        rec.wait_for(Event(UPDATE, "marker"))
        assert rec.seen().count(Event(FULL, "b", True)) <= seen + 1  # the unmount's own
    finally:
        w.stop()
        w.join(5)
