"""Nothing lost: a remote down, a kill, an inotify overflow, the root gone, the watch limit,
SIGTERM. Each scenario ends with the tree comparison, and prints how long convergence took
after the fault ended (recorded as a test property too)."""

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import trees_equal, wait_until

from integration.conftest import confxml, same_tree, status_after, status_when, write


def converge_seconds(src, dst, since, record_property, name, timeout=60):
    same_tree(src, dst, timeout=timeout, settle=0)
    seconds = time.monotonic() - since
    record_property(name, round(seconds, 2))
    print(f"{name}: {seconds:.2f} s")
    return seconds


class Writer(threading.Thread):
    """Changes the source continuously: a new file every `every` seconds."""

    def __init__(self, root: Path, every: float = 0.05):
        super().__init__(daemon=True)
        self.root, self.every = root, every
        self.stop_event = threading.Event()
        self.count = 0

    def run(self):
        previous = None
        while not self.stop_event.wait(self.every):
            path = write(self.root / f"w{self.count // 50}" / f"f{self.count}", b"%d" % self.count)
            if self.count % 7 == 3 and previous is not None:
                previous.unlink()  # deletes too, now and then
            previous = path
            self.count += 1

    def stop(self):
        self.stop_event.set()
        self.join()


def test_remote_daemon_stopped_for_30s_during_changes(rsync_daemon, src, sersyncpy,
                                                      record_property):
    down, up = rsync_daemon(), rsync_daemon()
    sersyncpy(confxml([(src, [(down, "backup"), (up, "backup")])]))
    writer = Writer(src)
    writer.start()
    try:
        # (no tree comparison while the writer runs: the trees are never still)
        wait_until(lambda: (up.modules["backup"] / "w0" / "f0").exists(), timeout=10)
        down.stop()
        outage_end = time.monotonic() + 30
        while time.monotonic() < outage_end:
            # The live remote keeps up while the other is down: each new file arrives fast.
            probe = write(src / "probe" / f"p{int(time.monotonic() * 1000)}", b"p")
            target = up.modules["backup"] / "probe" / probe.name
            wait_until(target.exists, timeout=3, message="the live remote fell behind")
            time.sleep(1)
        down.start()
        restarted = time.monotonic()
    finally:
        writer.stop()
    converge_seconds(src, down.modules["backup"], restarted, record_property,
                     "seconds_after_daemon_restart")
    same_tree(src, up.modules["backup"])


def test_sigkill_mid_burst_then_restart_without_r_loses_nothing(daemon, src, sersyncpy,
                                                                record_property):
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    data = os.urandom(4096)
    for d in range(100):
        os.mkdir(src / f"d{d}")
        for f in range(100):
            (src / f"d{d}/f{f}").write_bytes(data[f:] + data[:f])
        if d == 30:
            proc.proc.send_signal(signal.SIGKILL)  # in the middle of the burst
            proc.proc.wait()
    assert not trees_equal(src, daemon.modules["backup"])
    proc.start()  # same config, same fail log, no -r
    restarted = time.monotonic()
    converge_seconds(src, daemon.modules["backup"], restarted, record_property,
                     "seconds_after_restart_from_sigkill")
    # Log text kept: the WARNING that names the repair (the fail log replayed, every root
    # resynced) is the product; no status field says how the last run ended.
    assert "did not stop cleanly" in proc.log()


@pytest.fixture
def sysctl():
    """sysctl(name, value): set a kernel setting for the test and restore it afterwards."""
    saved = {}

    def set_value(name, value):
        path = Path("/proc/sys") / name.replace(".", "/")
        if os.geteuid() != 0:
            pytest.skip("needs root to change sysctls")
        saved.setdefault(path, path.read_text())
        path.write_text(f"{value}\n")

    yield set_value
    for path, value in saved.items():
        path.write_text(value)


def test_overflow_resyncs_the_root(daemon, src, sersyncpy, sysctl, record_property,
                                   each_watcher):
    # The limit applies to inotify instances (fanotify groups) created while it is in force.
    limit = f"fs.{each_watcher}.max_queued_events"
    for d in range(20):
        os.mkdir(src / f"d{d}")  # watched from the start (inotify): their files' events queue
    sysctl(limit, 64)
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])], attrib=True))
    sysctl(limit, 16384)
    # Stopped, it reads nothing: the burst cannot fit in 64 queued events (fanotify merges
    # each file's events into one, and a watcher that keeps up may never overflow).
    proc.proc.send_signal(signal.SIGSTOP)
    try:
        for d in range(20):
            for f in range(100):
                write(src / f"d{d}/f{f}", b"x" * f)
    finally:
        proc.proc.send_signal(signal.SIGCONT)
    burst_end = time.monotonic()
    converge_seconds(src, daemon.modules["backup"], burst_end, record_property,
                     "seconds_after_overflow_burst")
    # The queue did overflow (so the overflow's resync is what converged).
    status_when(proc, lambda d: d["overflows"] >= 1, timeout=5, message="no overflow")


def test_root_deleted_no_mass_deletion_then_resumes(daemon, src, sersyncpy, tmp_path):
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    for i in range(200):
        write(src / f"d{i % 10}/f{i}", b"%d" % i)
    same_tree(src, daemon.modules["backup"])
    backup_copy = tmp_path / "copy"
    shutil.copytree(src, backup_copy, symlinks=True)
    # rm -rf as a slow disk does it: longer than the deletion hold, root last
    for dirpath, dirnames, filenames in os.walk(src, topdown=False):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            os.rmdir(os.path.join(dirpath, name))
            time.sleep(0.15)
    os.rmdir(src)
    # Paused: the lane met the root gone, and pushes nothing until it is back. What it
    # pushed before is all there will be.
    status_when(proc, lambda d: d["remotes"][0]["paused"], timeout=10,
                message="the lane did not pause")
    remaining = sum(len(files) for _, _, files in os.walk(daemon.modules["backup"]))
    assert remaining >= 198, f"only {remaining} of 200 files left on the remote"
    assert proc.proc.poll() is None
    shutil.copytree(backup_copy, src, symlinks=True)  # the root is back
    write(src / "after/new", b"n")
    same_tree(src, daemon.modules["backup"], timeout=30)


def test_root_covered_by_an_empty_mount_deletes_nothing(daemon, src, sersyncpy):
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    for i in range(50):
        write(src / f"f{i}", b"%d" % i)
    same_tree(src, daemon.modules["backup"])
    before = sorted(os.listdir(daemon.modules["backup"]))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(src)], check=True)
    try:
        status_when(proc, lambda d: d["remotes"][0]["paused"], timeout=10,
                    message="the lane did not pause")
        (src / "on-the-mount").write_bytes(b"m")
        # Still paused in a document written after the write: nothing went meanwhile.
        status_after(proc, time.time(), lambda d: d["remotes"][0]["paused"], timeout=10,
                     message="the lane went on with the mount")
        assert sorted(os.listdir(daemon.modules["backup"])) == before
    finally:
        subprocess.run(["umount", str(src)], check=True)
    # Back: the lane goes on, with a full push of the root that worked.
    unmounted = time.time()
    status_when(proc, lambda d: not d["remotes"][0]["paused"]
                and (d["remotes"][0]["last_full_sync"] or 0) > unmounted, timeout=15,
                message="the root was not seen back")
    write(src / "after-umount", b"a")
    same_tree(src, daemon.modules["backup"], timeout=30)


def inotify_watches_in_use() -> int:
    """Watches held by every inotify instance on the machine (they count per user)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
                    total += f.read().count(b"inotify wd:")
        except OSError:
            continue
    return total


def test_watch_limit_names_the_sysctl_and_resyncs_unwatched_dirs(
        daemon, src, sersyncpy, sysctl, monkeypatch, record_property):
    for d in range(12):
        os.makedirs(src / f"dir{d}/sub")
    monkeypatch.setenv("SERSYNCPY_UNWATCHED_RESYNC_SECONDS", "2")
    monkeypatch.setenv("SERSYNCPY_WATCHER", "inotify")  # fanotify has no watches to run out of
    sysctl("fs.inotify.max_user_watches", inotify_watches_in_use() + 6)
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    at_start = proc.status()  # written once the watches were set, before the limit is raised
    sysctl("fs.inotify.max_user_watches", 1 << 20)
    assert at_start["roots"][0]["unwatched"] > 0, at_start
    # Log text kept: the WARNING that names the sysctl to raise is the product.
    assert "fs.inotify.max_user_watches" in proc.log()
    for d in range(12):
        write(src / f"dir{d}/sub/late", b"%d" % d)
    written = time.monotonic()
    converge_seconds(src, daemon.modules["backup"], written, record_property,
                     "seconds_until_unwatched_dirs_synced", timeout=30)


def test_watch_limit_advice_and_raise_inotify_limits(daemon, src, sersyncpy, sysctl,
                                                     monkeypatch):
    monkeypatch.setenv("SERSYNCPY_WATCHER", "inotify")
    for d in range(12):
        os.makedirs(src / f"dir{d}/sub")
    low = inotify_watches_in_use() + 6
    sysctl("fs.inotify.max_user_watches", low)
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]), "--raise-inotify-limits")
    log = proc.log()
    # Log text kept: the advice, which names the sysctl, its value and the value to set.
    assert f"fs.inotify.max_user_watches is {low}" in log, log
    assert "sysctl -w fs.inotify.max_user_watches=" in log
    # The flag then set it, and every directory is watched.
    with open("/proc/sys/fs/inotify/max_user_watches") as f:
        assert int(f.read()) > low
    (root,) = proc.status()["roots"]
    assert (root["watches"], root["unwatched"]) == (25, 0), root  # src, 12 dirs, 12 subs
    for d in range(12):
        write(src / f"dir{d}/sub/late", b"%d" % d)
    same_tree(src, daemon.modules["backup"], timeout=10)


def test_sigterm_mid_burst_pushes_or_persists_everything(rsync_daemon, src, sersyncpy):
    good, down = rsync_daemon(), rsync_daemon()
    down.stop()
    proc = sersyncpy(confxml([(src, [(good, "backup"), (down, "backup")])]))
    for i in range(2000):
        write(src / f"b{i % 20}/f{i}", b"%d" % i)
    assert proc.terminate() == 0
    same_tree(src, good.modules["backup"], timeout=5)  # pushed before exiting
    assert proc.fail_log.exists() and b"#P " in proc.fail_log.read_bytes()  # persisted
    down.start()
    proc.start()
    same_tree(src, down.modules["backup"], timeout=30)


def test_partial_transfer_retries_only_the_failed_paths(daemon, src, sersyncpy,
                                                        record_property):
    module = daemon.modules["backup"]
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]), "--debug")
    write(src / "blocked/first", b"1")
    write(src / "free/first", b"1")
    same_tree(src, module)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                    str(module / "blocked")], check=True)
    try:
        write(src / "blocked/second", b"2")
        write(src / "free/second", b"2")
        wait_until(lambda: (module / "free/second").exists(), timeout=10)
        # rsync's exit 23: only the path that failed stays pending, to be retried.
        status_when(proc, lambda d: d["remotes"][0]["last_error"].startswith("exit 23 ")
                    and d["remotes"][0]["pending"] == 1, timeout=10,
                    message="the partial transfer did not leave one path to retry")
        assert not (module / "blocked/second").exists()
    finally:
        for _ in range(50):  # the daemon's child may hold the mount for a moment
            if subprocess.run(["umount", str(module / "blocked")]).returncode == 0:
                break
            time.sleep(0.1)
    unmounted = time.monotonic()
    converge_seconds(src, module, unmounted, record_property, "seconds_after_unmount")
