"""Live replication end to end: the real sersyncpy command, real inotify and real fanotify
(each test runs under both watchers), real rsync daemons. Every test ends with the tree
comparison."""

import os
import random
import shutil
import time

import pytest
from conftest import wait_until

from integration.conftest import (
    confxml,
    remote_entry,
    same_tree,
    status_when,
    unmount,
    write,
)

pytestmark = pytest.mark.usefixtures("each_watcher")


@pytest.fixture
def one(daemon, src, sersyncpy):
    """sersyncpy replicating `src` to one daemon module; returns (src, replica dir, process)."""
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])], attrib=True))
    return src, daemon.modules["backup"], proc


def test_create_overwrite_append_and_empty_file(one):
    src, dst, _ = one
    write(src / "a.txt", b"first")
    write(src / "empty")
    same_tree(src, dst)
    write(src / "a.txt", b"second version")
    with open(src / "a.txt", "ab") as f:
        f.write(b" and more")
    (src / "empty").write_bytes(b"")
    same_tree(src, dst)


def test_mkdir_p_then_write_inside_at_once(one):
    src, dst, _ = one
    os.makedirs(src / "a/b/c")
    write(src / "a/b/c/deep.txt", b"deep")
    write(src / "a/top.txt", b"top")
    same_tree(src, dst)


def test_delete_a_file_and_rm_r_a_tree(one):
    src, dst, _ = one
    for i in range(20):
        write(src / f"t/sub{i % 3}/f{i}", b"%d" % i)
    write(src / "lone", b"x")
    same_tree(src, dst)
    os.unlink(src / "lone")
    for root, dirs, files in os.walk(src / "t", topdown=False):
        for f in files:
            os.unlink(os.path.join(root, f))
        for d in dirs:
            os.rmdir(os.path.join(root, d))
    os.rmdir(src / "t")
    same_tree(src, dst)


def test_rename_a_file(one):
    src, dst, _ = one
    write(src / "old.txt", b"content")
    same_tree(src, dst)
    os.rename(src / "old.txt", src / "new.txt")
    same_tree(src, dst)


def test_rename_a_directory_sends_almost_no_data(one, daemon):
    src, dst, _ = one
    payload = os.urandom(1 << 20)
    for i in range(8):
        write(src / f"big/f{i}", payload[i:] + bytes([i]))
    os.makedirs(src / "elsewhere")
    same_tree(src, dst)
    log_before = daemon.log_file.read_text()
    os.rename(src / "big", src / "elsewhere/renamed")
    same_tree(src, dst)
    size = sum(len(payload) for _ in range(8))
    new_lines = daemon.log_file.read_text()[len(log_before):].splitlines()
    # log format "%o %f %l %b": %b is the bytes actually sent for that file
    sent = sum(int(line.split()[-1]) for line in new_lines
               if " recv " in line and line.split()[-1].isdigit())
    assert sent < size / 100, f"{sent} bytes sent for a {size}-byte directory rename"


def test_move_into_and_out_of_the_tree(one, tmp_path):
    src, dst, _ = one
    outside = tmp_path / "outside"
    write(outside / "incoming/a", b"a")
    write(outside / "incoming/sub/b", b"b")
    write(src / "leaving/c", b"c")
    same_tree(src, dst)
    os.rename(outside / "incoming", src / "incoming")
    os.rename(src / "leaving", outside / "leaving")
    same_tree(src, dst)
    # the moved-out directory is no longer watched: changes there must not arrive
    write(outside / "leaving/late", b"late")
    write(src / "marker", b"m")
    same_tree(src, dst)


def test_chmod_is_a_metadata_update(one):
    src, dst, _ = one
    write(src / "script.sh", b"#!/bin/sh\n")
    os.makedirs(src / "dir")
    write(src / "dir/inside", b"i")
    same_tree(src, dst)
    os.chmod(src / "script.sh", 0o755)
    os.chmod(src / "dir", 0o700)
    same_tree(src, dst)
    write(src / "dir/after", b"still watched")  # sersync dropped the subtree's watches here
    same_tree(src, dst)


def test_symlink_and_hard_link(one):
    src, dst, _ = one
    write(src / "target.txt", b"t")
    same_tree(src, dst)
    os.symlink("target.txt", src / "link")
    os.link(src / "target.txt", src / "hard")
    same_tree(src, dst)


def test_same_size_rewrite_within_one_second_arrives(one):
    src, dst, _ = one
    f = write(src / "same.txt", b"AAAA")
    st = os.stat(f)
    same_tree(src, dst)
    f.write_bytes(b"BBBB")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # the quick check sees nothing new
    wait_until(lambda: (dst / "same.txt").read_bytes() == b"BBBB", timeout=10)
    same_tree(src, dst)


def test_two_and_three_remotes_converge(rsync_daemon, src, sersyncpy):
    d1 = rsync_daemon(modules=("m1", "m2"))
    d2 = rsync_daemon()
    sersyncpy(confxml([(src, [(d1, "m1"), (d1, "m2"), (d2, "backup")])]))
    for i in range(30):
        write(src / f"d{i % 4}/f{i}", b"x" * i)
    for replica in (d1.modules["m1"], d1.modules["m2"], d2.modules["backup"]):
        same_tree(src, replica)


def test_a_remote_with_a_wrong_password_does_not_stop_the_others(rsync_daemon, src, sersyncpy,
                                                                 tmp_path):
    good = rsync_daemon()
    bad = rsync_daemon(modules=("other",))
    bad.secrets_file.write_text("sersync:something-else\n")  # our password no longer matches
    proc = sersyncpy(confxml([(src, [(bad, "other"), (good, "backup")])]))
    for i in range(10):
        write(src / f"f{i}", b"%d" % i)
    same_tree(src, good.modules["backup"])
    doc = status_when(proc, lambda d: remote_entry(d, bad, "other")["failed_batches"] >= 1,
                      timeout=10, message="the remote with the wrong password never failed")
    wrong = remote_entry(doc, bad, "other")
    assert wrong["last_error"].startswith("exit 5 "), wrong  # rsync: the daemon refused us
    assert wrong["pending"] >= 1 and wrong["last_success"] is None, wrong
    assert os.listdir(bad.modules["other"]) == []


def test_excluded_paths_never_arrive(daemon, src, sersyncpy):
    sersyncpy(confxml([(src, [(daemon, "backup")])], excludes=(r"(.*)\.gz", r"^cache/*"),
                      crontab_excludes=("*.gz", "cache/")))
    write(src / "keep.txt", b"k")
    write(src / "drop.gz", b"d")
    write(src / "sub/drop2.gz", b"d")
    os.makedirs(src / "cache/deeper")
    write(src / "cache/deeper/x", b"x")
    write(src / "newdir/in.gz", b"d")
    write(src / "newdir/in.txt", b"k")
    ignore = ("drop.gz", "sub/drop2.gz", "cache", "newdir/in.gz")
    same_tree(src, daemon.modules["backup"], ignore=ignore)
    # Pushed in order: once a later file is there, a wrongly sent one would have been too.
    write(src / "later.txt", b"l")
    wait_until(lambda: (daemon.modules["backup"] / "later.txt").exists(), timeout=10)
    for rel in ignore:
        assert not (daemon.modules["backup"] / rel).exists(), rel


def test_every_name_is_replicated_unless_sersyncs_rule_is_asked_for(
        rsync_daemon, src, sersyncpy, tmp_path):
    d = rsync_daemon()
    src2 = tmp_path / "src2"
    src2.mkdir()
    d2 = rsync_daemon()
    sersyncpy(confxml([(src, [(d, "backup")])]))  # the default: every name
    sersyncpy(confxml([(src2, [(d2, "backup")])], keep_dotfiles=False))  # sersync's rule
    for root in (src, src2):
        write(root / ".htaccess", b"deny")
        write(root / ".user.ini", b"x=1")
        write(root / ".well-known/acme-challenge/token", b"t")
        write(root / "backup~", b"b")
        write(root / "4913", b"vim")
        write(root / "real.txt", b"r")
    same_tree(src, d.modules["backup"])
    dropped = (".htaccess", ".user.ini", "backup~", "4913")
    same_tree(src2, d2.modules["backup"], ignore=dropped)
    # Pushed in order: once a later file is there, a dropped one would have been too.
    write(src2 / "later.txt", b"l")
    wait_until(lambda: (d2.modules["backup"] / "later.txt").exists(), timeout=10)
    assert not [rel for rel in dropped if (d2.modules["backup"] / rel).exists()]


def test_2000_files_in_20_new_directories_converge_in_few_rsync_calls(daemon, src, sersyncpy):
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    data = os.urandom(1024)
    for d in range(20):
        os.makedirs(src / f"dir{d}")
        for f in range(100):
            (src / f"dir{d}/file{f}").write_bytes(data[f:] + data[:f])
    same_tree(src, daemon.modules["backup"], timeout=60)
    converged = time.time()
    doc = status_when(proc, lambda d: d["updated"] > converged, timeout=5)
    runs = doc["remotes"][0]["rsync_runs"]  # the start-up resync's included
    assert runs < 200, f"{runs} rsync calls for 2,000 files"


def test_a_burst_into_1000_new_nested_directories_misses_nothing(daemon, src, sersyncpy):
    # 10 chains of 100 nested directories, each with a file written right after its mkdir:
    # inotify must watch each before its file (or find it by the scan); fanotify needs neither.
    sersyncpy(confxml([(src, [(daemon, "backup")])]))
    for chain in range(10):
        deep = src / f"c{chain}"
        for level in range(100):
            deep = deep / f"{level}"
            os.makedirs(deep)
            (deep / "f").write_bytes(b"%d/%d" % (chain, level))
    same_tree(src, daemon.modules["backup"], timeout=60)


def test_dash_r_pushes_a_pre_existing_tree_then_goes_live(daemon, src, sersyncpy):
    for i in range(50):
        write(src / f"pre/{i % 5}/f{i}", b"%d" % i)
    os.symlink("pre", src / "link")
    write(daemon.modules["backup"] / "stale-on-remote", b"gone after -r")
    sersyncpy(confxml([(src, [(daemon, "backup")])]), "-r")
    same_tree(src, daemon.modules["backup"])
    write(src / "live.txt", b"live")
    same_tree(src, daemon.modules["backup"])


def test_several_localpaths_and_a_per_remote_port(rsync_daemon, tmp_path, sersyncpy):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    da, db = rsync_daemon(), rsync_daemon()
    sersyncpy(confxml([(a, [(da, "backup")]), (b, [(db, "backup")])]))
    write(a / "in-a", b"a")
    write(b / "in-b", b"b")
    same_tree(a, da.modules["backup"])
    same_tree(b, db.modules["backup"])


def test_sigterm_pushes_what_is_queued_and_exits_0(daemon, src, sersyncpy):
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    for i in range(300):
        write(src / f"burst/f{i}", b"%d" % i)
    assert proc.terminate() == 0
    same_tree(src, daemon.modules["backup"], timeout=5)


def _random_operations(root, rng, count):
    """Creates, rewrites, deletes and renames of files and directories on a small namespace,
    so that paths are often reused: a delete then a re-create, a rename onto a deleted name."""
    names = ["a", "b", "c", "d"]
    for _ in range(count):
        parts = [rng.choice(names) for _ in range(rng.randint(1, 3))]
        path = root.joinpath(*parts)
        op = rng.random()
        try:
            if op < 0.45:
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.is_dir():
                    path.write_bytes(os.urandom(rng.randint(0, 3000)))
            elif op < 0.6:
                path.mkdir(parents=True, exist_ok=True)
            elif op < 0.8:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            else:
                other = root.joinpath(*[rng.choice(names) for _ in range(rng.randint(1, 2))])
                if path.exists() and not other.exists() and not str(other).startswith(
                        str(path) + "/"):
                    other.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(path, other)
        except (FileExistsError, NotADirectoryError, FileNotFoundError, IsADirectoryError,
                OSError):
            pass  # the namespace collides with itself; what matters is the final state


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_changes_converge_with_no_stale_overwrite(daemon, src, sersyncpy, seed):
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])], attrib=True, debug=True))
    rng = random.Random(seed)
    for _ in range(5):
        _random_operations(src, rng, 200)
        time.sleep(rng.random() * 0.05)  # let some batches go out in between
    try:
        same_tree(src, daemon.modules["backup"], timeout=30)
    except AssertionError as failed:  # every batch and rsync call, to see which went wrong
        raise AssertionError(f"{failed}\n{proc.log()}") from None


def test_a_watch_root_that_is_a_symlink_is_followed(daemon, tmp_path, sersyncpy):
    real = tmp_path / "data/www"
    real.mkdir(parents=True)
    link = tmp_path / "www"
    os.symlink(real, link)
    sersyncpy(confxml([(link, [(daemon, "backup")])]))
    write(real / "sub/page.html", b"<p>")
    same_tree(real, daemon.modules["backup"])


def test_a_file_system_mounted_below_the_root_after_the_start_is_replicated(
        daemon, src, sersyncpy, tmpfs, monkeypatch):
    """A disk mounted into the tree while sersyncpy runs reaches the replica (under fanotify,
    by its resync each unwatched-resync period), and once it is unmounted the replica holds
    what shows there again."""
    monkeypatch.setenv("SERSYNCPY_UNWATCHED_RESYNC_SECONDS", "1")
    sersyncpy(confxml([(src, [(daemon, "backup")])]))
    dst = daemon.modules["backup"]
    write(src / "uploads/under.txt", b"on the root's file system")
    same_tree(src, dst)
    tmpfs(src / "uploads", "1m")
    write(src / "uploads/on-the-disk.txt", b"on the mounted one")
    write(src / "uploads/dir/deeper.txt", b"deeper")
    same_tree(src, dst)
    unmount(src / "uploads")
    same_tree(src, dst)
