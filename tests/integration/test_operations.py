"""Operating a running sersyncpy: -d (double fork, locked pid file), SIGHUP reload, the status
file and `sersyncpy status`, SIGUSR2 (a full sync now), SIGUSR1 (reopen the log), <crontab>,
and the log format on stderr. Real processes against real rsync daemons; each test ends with
the replica trees, exit codes or exact status fields."""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import pytest
from conftest import stop_process, trees_equal, wait_until

from integration.conftest import (
    confxml,
    label,
    read_status,
    remote_entry,
    same_tree,
    status_when,
    write,
)

SERSYNCPY = [sys.executable, "-m", "sersyncpy"]
PR_SET_CHILD_SUBREAPER = 36  # prctl(2)

TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR"
                         r"|CRITICAL) [\w.]+: ")
UNTIMED = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")

ROOT_FIELDS = {"path", "watches", "unwatched", "unreadable", "last_full_sync"}
REMOTE_FIELDS = {"root", "remote", "pending", "lag_seconds", "last_success",
                 "consecutive_failures", "failed_batches", "last_error", "files_sent",
                 "bytes_sent", "rsync_runs", "batches", "last_full_sync", "paused",
                 "pending_collapses", "events", "events_collapsed", "paths"}
DOCUMENT_FIELDS = {"format", "pid", "config", "running", "started", "updated", "interval",
                   "roots", "remotes", "plugin", "fail_log", "status_file", "overflows",
                   "watcher"}


# --------------------------------------------------------------------------- helpers


def conf_text(home: Path, roots: list, **options) -> str:
    """confxml() with the fail log (so the status file) of this process's own in `home`."""
    return confxml(roots, **options).replace("/tmp/rsync_fail_log.sh", str(home / "fail_log.sh"))


def reconfigure(proc, roots: list, **options) -> None:
    proc.config.write_text(conf_text(proc.home, roots, **options))


def with_crontab(text: str, minutes: int) -> str:
    old = '<crontab start="false" schedule="600">'
    assert old in text
    return text.replace(old, f'<crontab start="true" schedule="{minutes}">')


def reload_outcomes(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if "reloaded " in line or "reload refused" in line]


def sighup(send: Callable[[int], None], read: Callable[[], str]) -> str:
    """Send SIGHUP and wait for the line saying how the reload went; return that line."""
    seen = len(reload_outcomes(read()))
    send(signal.SIGHUP)
    return wait_until(lambda: reload_outcomes(read())[seen:], timeout=15,
                      message="no reload outcome in the log")[0]


def hup(proc) -> str:
    return sighup(proc.proc.send_signal, proc.log)


def status_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SERSYNCPY, "status", *args], capture_output=True, text=True,
                          timeout=60)


# --------------------------------------------------------------------------- -d


def reap(pid: int, timeout: float) -> Optional[int]:
    """Wait for `pid` (our child: we are its subreaper) to exit; its wait status, or None
    if it is still running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours after all: judge by /proc
            if not os.path.exists(f"/proc/{pid}"):
                return 0
            done, status = 0, 0
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def stop_detached(pid: int, timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL; reap it and wait until /proc/PID is gone; its wait status."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    status = reap(pid, timeout)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        status = reap(pid, timeout)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=5,
               message=f"pid {pid} still in /proc")
    return status


class Detached:
    """Starts `sersyncpy -d` from `home` with relative paths, as an admin in that directory
    would. The test process is a child subreaper meanwhile, so the daemon, orphaned by the
    double fork, becomes our child: stopped by its pid and reaped at teardown."""

    def __init__(self, home: Path):
        self.home = home
        self.config = home / "confxml.xml"
        self.pidfile = home / "sersyncpy.pid"
        self.log_path = home / "sersyncpy.log"
        self.pids: list[int] = []

    def start(self, *flags: str, pidfile: Optional[str] = "sersyncpy.pid",
              log_file: Optional[str] = "sersyncpy.log") -> subprocess.CompletedProcess:
        argv = [*SERSYNCPY, "-d", "-o", "confxml.xml"]
        argv += ["--pidfile", pidfile] if pidfile else []
        argv += ["--log-file", log_file] if log_file else []
        result = subprocess.run([*argv, *flags], cwd=self.home, capture_output=True,
                                text=True, timeout=60)
        if result.returncode == 0:
            self.pids.append(self.pid())
        return result

    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.pids[-1], signum)

    def stop(self, pid: int) -> int:
        """Stop and reap one daemon; forget its pid, which may be reused from now on."""
        status = stop_detached(pid)
        self.pids.remove(pid)
        return status

    def stop_all(self) -> None:
        for pid in list(self.pids):
            self.stop(pid)


@pytest.fixture
def detached(tmp_path):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    home = tmp_path / "home"
    home.mkdir()
    d = Detached(home)
    try:
        yield d
    finally:
        try:
            d.stop_all()
        finally:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_dash_d_detaches_replicates_and_stops_on_sigterm(daemon, detached):
    src = detached.home / "src"
    src.mkdir()
    detached.config.write_text(conf_text(detached.home, [(src, [(daemon, "backup")])]))

    result = detached.start()
    # The starting process returns once the daemon replicates, and says nothing.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    pid = detached.pid()
    assert detached.pidfile.read_text() == f"{pid}\n"
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    with open(f"/proc/{pid}/status") as f:
        assert "Umask:\t0022" in f.read().splitlines()
    assert os.getsid(pid) != os.getsid(0)  # its own session: our terminal cannot stop it
    assert os.getsid(pid) != pid  # and not its leader: it can never get a terminal again
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    for fd in (1, 2):  # stray output and tracebacks land in the log file
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == str(detached.log_path)
    # Log text kept: what -d writes to its --log-file is the product here, and the start-up
    # notice is its first line.
    assert "replicating to 1 remote" in detached.log()

    write(src / "live.txt", b"written after the start")
    write(src / "sub/deep.txt", b"deep")
    same_tree(src, daemon.modules["backup"])

    status = detached.stop(pid)
    assert os.waitstatus_to_exitcode(status) == 0, detached.log()
    assert not detached.pidfile.exists()
    # SIGTERM was a clean stop: the last status document, written at the end of the drain.
    last = read_status(detached.home / "fail_log.status.json")
    assert (last["pid"], last["running"]) == (pid, False), last


def test_dash_d_refuses_a_second_instance_on_the_same_pid_file(daemon, detached):
    src = detached.home / "src"
    src.mkdir()
    detached.config.write_text(conf_text(detached.home, [(src, [(daemon, "backup")])]))
    assert detached.start().returncode == 0
    pid = detached.pid()

    second = detached.start(log_file="second.log")
    assert second.returncode == 1, second
    assert second.stdout == ""
    assert second.stderr.splitlines() == [
        f"sersyncpy: another sersyncpy (pid {pid}) is running with the pid file "
        f"{detached.pidfile}"]
    # The first one is untouched: same pid file, still replicating.
    assert detached.pid() == pid
    assert os.path.exists(f"/proc/{pid}")
    write(src / "f", b"still replicated")
    same_tree(src, daemon.modules["backup"])


def test_dash_d_with_a_relative_config_reloads_it_on_sighup(rsync_daemon, detached):
    d1, d2 = rsync_daemon(), rsync_daemon()
    src = detached.home / "src"
    src.mkdir()
    detached.config.write_text(conf_text(detached.home, [(src, [(d1, "backup")])]))
    assert detached.start().returncode == 0
    write(src / "b.txt", b"b")
    same_tree(src, d1.modules["backup"])

    # The daemon's cwd is /, and "-o confxml.xml" was relative to where it started.
    status = detached.home / "fail_log.status.json"
    assert read_status(status)["config"] == "confxml.xml"  # as given
    detached.config.write_text(conf_text(detached.home, [(src, [(d1, "backup"),
                                                                (d2, "backup")])]))
    detached.signal(signal.SIGHUP)
    # The config in force is the one re-read, by its absolute path, with the remote added.
    doc = status_when(status, lambda d: [r["remote"] for r in d["remotes"]]
                      == [label(d1), label(d2)], message="the reload did not add d2")
    assert doc["config"] == str(detached.config), detached.log()
    same_tree(src, d2.modules["backup"])
    same_tree(src, d1.modules["backup"])


def test_dash_d_reload_of_an_unchanged_config_with_a_relative_watch(daemon, detached):
    src = detached.home / "src"
    src.mkdir()
    # watch="src": relative to the directory sersyncpy was started from, as at start-up.
    detached.config.write_text(conf_text(detached.home, [(Path("src"), [(daemon, "backup")])]))
    assert detached.start().returncode == 0
    write(src / "a", b"a")
    same_tree(src, daemon.modules["backup"])
    status = detached.home / "fail_log.status.json"
    assert read_status(status)["config"] == "confxml.xml"  # as given
    detached.signal(signal.SIGHUP)
    # Applied, not refused: the config in force is now the one re-read (a refused reload
    # keeps the running one, named as it was given).
    status_when(status, lambda d: d["config"] == str(detached.config),
                message=f"the reload was refused\n{detached.log()}")


def test_dash_d_sigusr1_moves_the_log_and_the_daemons_stderr_to_a_new_file(daemon, detached):
    src = detached.home / "src"
    src.mkdir()
    detached.config.write_text(conf_text(detached.home, [(src, [(daemon, "backup")])]))
    assert detached.start().returncode == 0
    pid = detached.pid()
    rotated = detached.home / "sersyncpy.log.1"
    os.rename(detached.log_path, rotated)
    old_text = rotated.read_text()
    detached.signal(signal.SIGUSR1)
    # Reopened: stdout and stderr are the new file at the old path again.
    wait_until(lambda: all(os.readlink(f"/proc/{pid}/fd/{fd}") == str(detached.log_path)
                           for fd in (1, 2)), timeout=10, message="the log was not reopened")
    write(src / "after-rotation", b"r")
    same_tree(src, daemon.modules["backup"])
    # Log text kept: the new file's lines are the product of a rotation; the per-batch INFO
    # line is the one a change must bring there.
    wait_until(lambda: f"{label(daemon)}: batch of 1 paths, exit 0" in detached.log(),
               timeout=10)
    assert rotated.read_text() == old_text


def test_dash_d_with_an_unwritable_log_file_fails_and_leaves_no_pid_file(daemon, detached):
    src = detached.home / "src"
    src.mkdir()
    detached.config.write_text(conf_text(detached.home, [(src, [(daemon, "backup")])]))
    result = detached.start(log_file="no/such/dir/sersyncpy.log")
    assert result.returncode == 1, result
    (line,) = result.stderr.splitlines()
    assert "no/such/dir/sersyncpy.log" in line and "cannot write the log file" in line
    assert not detached.pidfile.exists()


# --------------------------------------------------------------------------- SIGHUP


def test_sighup_adds_a_remote_which_gets_the_whole_root_and_no_other_resyncs(
        rsync_daemon, src, sersyncpy):
    d1, d2 = rsync_daemon(), rsync_daemon(modules=("mirror",))
    for i in range(10):
        write(src / f"old/f{i}", b"%d" % i)
    proc = sersyncpy(confxml([(src, [(d1, "backup")])]))
    same_tree(src, d1.modules["backup"])
    inodes = {p.name: p.stat().st_ino for p in (d1.modules["backup"] / "old").iterdir()}
    # d1's own start-up resync, done before the reload.
    first = status_when(proc, lambda d: d["remotes"][0]["last_full_sync"] is not None)
    d1_full_sync = first["remotes"][0]["last_full_sync"]
    d1_runs = first["remotes"][0]["rsync_runs"]

    reconfigure(proc, [(src, [(d1, "backup"), (d2, "mirror")])])
    outcome = hup(proc)
    # Log text kept: the one test of the summary a reload logs, which the admin who sent
    # SIGHUP reads (no status field says how a reload went).
    assert f"reloaded {proc.config}: 0 exclude(s), added {label(d2, 'mirror')}" in outcome
    same_tree(src, d2.modules["mirror"])  # the files from before the reload too
    # The new remote had its full sync; the remote that stayed ran no rsync at all since.
    doc = status_when(proc, lambda d: len(d["remotes"]) == 2
                      and d["remotes"][1]["last_full_sync"] is not None)
    assert doc["remotes"][0]["last_full_sync"] == d1_full_sync
    assert doc["remotes"][0]["rsync_runs"] == d1_runs
    assert {p.name: p.stat().st_ino for p in (d1.modules["backup"] / "old").iterdir()} == inodes

    write(src / "new.txt", b"after the reload")
    same_tree(src, d1.modules["backup"])
    same_tree(src, d2.modules["mirror"])
    doc = status_when(proc, lambda d: len(d["remotes"]) == 2)
    assert [r["remote"] for r in doc["remotes"]] == [label(d1), label(d2, "mirror")]


def test_sighup_removes_a_remote_which_is_pushed_nothing_more(rsync_daemon, src, sersyncpy):
    d1, d2 = rsync_daemon(), rsync_daemon()
    proc = sersyncpy(confxml([(src, [(d1, "backup"), (d2, "backup")])]))
    write(src / "both.txt", b"for both")
    same_tree(src, d1.modules["backup"])
    same_tree(src, d2.modules["backup"])

    reconfigure(proc, [(src, [(d2, "backup")])])
    proc.proc.send_signal(signal.SIGHUP)
    status_when(proc, lambda d: [r["remote"] for r in d["remotes"]] == [label(d2)],
                message="the reload did not remove d1")
    write(src / "only-d2.txt", b"after the reload")
    os.unlink(src / "both.txt")
    same_tree(src, d2.modules["backup"])
    # d1 is up: any push to it since the reload would have changed its module.
    assert sorted(os.listdir(d1.modules["backup"])) == ["both.txt"]


def _malformed(proc, other: Path, daemon) -> str:
    return proc.config.read_text().replace("</sersync>", "")


def _missing_watch(proc, other: Path, daemon) -> str:
    return conf_text(proc.home, [(other / "does-not-exist", [(daemon, "backup")])])


def _moved_watch(proc, other: Path, daemon) -> str:
    return conf_text(proc.home, [(other, [(daemon, "backup")])])


@pytest.mark.parametrize("bad, why", [
    (_malformed, "malformed"),
    (_missing_watch, "directory does not exist"),
    (_moved_watch, "the watched directories changed"),
], ids=["malformed-xml", "missing-watch", "changed-watch"])
def test_sighup_refuses_a_bad_config_and_keeps_the_running_one(daemon, src, tmp_path,
                                                               sersyncpy, bad, why):
    other = tmp_path / "other"
    other.mkdir()
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    write(src / "a", b"a")
    same_tree(src, daemon.modules["backup"])

    proc.config.write_text(bad(proc, other, daemon))
    outcome = hup(proc)
    # Log text kept: the one-line ERROR is what the admin who sent SIGHUP reads.
    assert re.search(r" ERROR [\w.]+: reload refused, the running config stays: ", outcome), \
        outcome
    assert why in outcome
    if bad is _moved_watch:
        assert "restart sersyncpy to apply that" in outcome
    assert proc.proc.poll() is None
    write(src / "b", b"b")
    write(other / "not-watched", b"x")
    same_tree(src, daemon.modules["backup"])
    assert not (daemon.modules["backup"] / "not-watched").exists()


def test_sighup_adds_an_exclude_that_applies_to_new_events(daemon, src, sersyncpy):
    dst = daemon.modules["backup"]
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    write(src / "before.tmp", b"no filter yet")
    same_tree(src, dst)

    reconfigure(proc, [(src, [(daemon, "backup")])], excludes=(r"(.*)\.tmp",),
                crontab_excludes=("*.tmp",))
    # Log text kept: no status field says a reload was applied (the writes below must come
    # after it).
    assert "reloaded " in hup(proc)
    write(src / "after.tmp", b"excluded now")
    write(src / "after.txt", b"kept")
    write(src / "sub/deep.tmp", b"excluded now")
    write(src / "sub/deep.txt", b"kept")
    same_tree(src, dst, ignore=("after.tmp", "sub/deep.tmp"))
    assert not (dst / "after.tmp").exists() and not (dst / "sub/deep.tmp").exists()
    assert (dst / "before.tmp").read_bytes() == b"no filter yet"


def _write_open_file(path: Path, dst: Path, give_up: Callable[[], bool]) -> None:
    """Write a file and keep it open (no CLOSE_WRITE) until it arrives in dst or give_up()."""
    with open(path, "wb") as f:
        f.write(b"first line\n")
        f.flush()
        wait_until(lambda: (dst / path.name).exists() or give_up(), timeout=5,
                   message="an open file written with <modify> on")


def test_modify_from_the_start_pushes_a_file_still_open(daemon, src, sersyncpy):
    """The control for the next test: what <modify start="true"> does when it was on at
    the start."""
    dst = daemon.modules["backup"]
    sersyncpy(confxml([(src, [(daemon, "backup")])], modify=True))
    _write_open_file(src / "growing.log", dst, lambda: False)
    same_tree(src, dst)


def test_sighup_enabling_modify_takes_effect_or_says_it_needs_a_restart(daemon, src,
                                                                       sersyncpy):
    dst = daemon.modules["backup"]
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    reconfigure(proc, [(src, [(daemon, "backup")])], modify=True)
    # Log text kept: no status field says a reload was applied, and the alternative to the
    # file arriving is the WARNING that says a restart is needed.
    assert "reloaded " in hup(proc)
    _write_open_file(src / "growing.log", dst, lambda: "restart" in proc.log())


# --------------------------------------------------------------------------- status file


def test_status_file_fields_counters_and_idle_refresh(daemon, src, sersyncpy):
    write(src / "old.txt", b"before the start")
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    # Once the start-up resync (one rsync, one file) is done.
    first = status_when(proc, lambda d: d["remotes"][0]["last_full_sync"] is not None)
    full_sync = first["remotes"][0]["last_full_sync"]
    assert first["started"] <= full_sync <= first["updated"]
    assert set(first) == DOCUMENT_FIELDS
    assert first["format"] == 1
    assert first["pid"] == proc.proc.pid
    assert first["config"] == str(proc.config)
    assert first["running"] is True
    assert first["interval"] == 2.0
    assert first["plugin"] is None
    assert first["started"] <= first["updated"] <= time.time()
    (root,) = first["roots"]
    assert set(root) == ROOT_FIELDS
    inotify = first["watcher"] == "inotify"  # fanotify (root, this kernel) has no watches
    assert first["watcher"] in ("inotify", "fanotify")
    assert root == {"path": str(src), "watches": 1 if inotify else 0, "unwatched": 0,
                    "unreadable": 0, "last_full_sync": full_sync}
    (remote,) = first["remotes"]
    assert set(remote) == REMOTE_FIELDS
    resync_bytes = remote["bytes_sent"]
    assert resync_bytes > len(b"before the start")
    assert {**remote, "bytes_sent": 0} == {
        "root": str(src), "remote": label(daemon), "pending": 0, "lag_seconds": 0,
        "last_success": None, "consecutive_failures": 0, "failed_batches": 0,
        "last_error": "", "files_sent": 1, "bytes_sent": 0, "rsync_runs": 1, "batches": 0,
        "last_full_sync": full_sync, "paused": False, "pending_collapses": 0,
        "events": 0, "events_collapsed": 0, "paths": 0,  # the resync is no event
    }

    sizes = [1000, 20000, 300000]
    for i, size in enumerate(sizes):
        write(src / f"d/f{i}", os.urandom(size))
    same_tree(src, daemon.modules["backup"])
    after = status_when(proc, lambda d: d["remotes"][0]["files_sent"] >= 1 + len(sizes)
                        and d["remotes"][0]["pending"] == 0)
    remote = after["remotes"][0]
    assert remote["bytes_sent"] >= resync_bytes + sum(sizes)
    assert remote["rsync_runs"] >= 2 and remote["batches"] >= 1
    assert remote["lag_seconds"] == 0 and remote["consecutive_failures"] == 0
    assert first["updated"] < remote["last_success"] <= after["updated"]
    assert after["roots"][0]["watches"] == (2 if inotify else 0)  # src and src/d

    # Idle: nothing changes, the file is still rewritten every couple of seconds.
    idle = after["updated"]
    again = status_when(proc, lambda d: d["updated"] > idle, timeout=5,
                        message="the status file was not refreshed while idle")
    assert again["remotes"][0]["files_sent"] == remote["files_sent"]
    assert again["pid"] == proc.proc.pid


def test_status_file_shows_a_down_remote_lagging_then_catching_up(rsync_daemon, src, sersyncpy):
    down, up = rsync_daemon(), rsync_daemon()
    proc = sersyncpy(confxml([(src, [(down, "backup"), (up, "backup")])]))
    write(src / "first", b"1")
    same_tree(src, down.modules["backup"])
    port = down.port
    down.stop()

    write(src / "while-down/a", b"a")
    write(src / "while-down/b", b"b")
    same_tree(src, up.modules["backup"])

    def failing(doc):
        entry = remote_entry(doc, down)
        # The lag counts from the oldest change not yet there, also while a retry runs.
        return entry["pending"] > 0 and entry["consecutive_failures"] >= 1 \
            and entry["lag_seconds"] > 0

    one = status_when(proc, failing, message="the down remote as failing")
    entry = remote_entry(one, down)
    assert entry["last_error"].startswith("exit "), entry
    assert entry["failed_batches"] >= 1
    two = status_when(proc, lambda d: d["updated"] > one["updated"] and failing(d))
    assert remote_entry(two, down)["lag_seconds"] > entry["lag_seconds"] > 0
    for doc in (one, two):
        live = remote_entry(doc, up)
        assert (live["pending"], live["lag_seconds"], live["consecutive_failures"]) == (0, 0, 0)
    assert os.listdir(down.modules["backup"]) == ["first"]

    down.start()
    assert down.port == port  # a restart keeps the port the config names
    same_tree(src, down.modules["backup"], timeout=20)

    def caught_up(doc):
        e = remote_entry(doc, down)
        return (e["pending"], e["lag_seconds"], e["consecutive_failures"], e["last_error"]) \
            == (0, 0, 0, "")
    doc = status_when(proc, caught_up, message="the restarted remote as caught up")
    assert remote_entry(doc, down)["last_success"] > one["updated"]


def test_status_lag_counts_a_push_that_hangs(daemon, src, sersyncpy):
    # A remote that accepts connections and never answers: rsync waits for its greeting
    # until --timeout (20 s).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hung = SimpleNamespace(port=silent.getsockname()[1], user=daemon.user,
                           password_file=daemon.password_file)
    try:
        proc = sersyncpy(confxml([(src, [(daemon, "backup"), (hung, "backup")])]))
        write(src / "f", b"f")
        written = time.monotonic()
        same_tree(src, daemon.modules["backup"])
        doc = status_when(proc, lambda d: remote_entry(d, hung)["pending"] == 1
                          and time.monotonic() - written > 4, timeout=10)
        assert remote_entry(doc, hung)["lag_seconds"] > 2, remote_entry(doc, hung)
        assert status_command("-o", str(proc.config), "--max-lag", "1").returncode == 1
    finally:
        silent.close()  # resets the connection rsync waits on: it fails at once


def test_status_command_exit_codes_table_and_json(daemon, src, sersyncpy):
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    conf = str(proc.config)
    write(src / "a", b"a")
    same_tree(src, daemon.modules["backup"])
    status_when(proc, lambda d: d["remotes"][0]["files_sent"] >= 1)

    ok = status_command("-o", conf)
    assert ok.returncode == 0, ok
    header, row = ok.stdout.splitlines()[:2]
    assert header.split() == ["REMOTE", "ROOT", "PENDING", "LAG", "LAST", "OK", "FAILS",
                              "FILES", "BYTES"]
    assert re.fullmatch(rf"{re.escape(label(daemon))} +{re.escape(str(src))} +0 +0\.0s +"
                        r"\d+s ago +0 +1 +[1-9]\d*", row), row
    watched = ("watched whole by fanotify" if status_when(proc, bool)["watcher"] == "fanotify"
               else "1 directories watched")
    assert f"root {src}: {watched}" in ok.stdout
    assert ok.stderr == "OK: every remote is current\n"

    daemon.stop()
    write(src / "waits", b"w")

    def lagging():
        result = status_command("-o", conf, "--max-lag", "1")
        return result if result.returncode == 1 else None
    late = wait_until(lagging, timeout=15, interval=0.2, message="status exit 1")
    assert late.stderr.startswith(f"LAGGING: 1 remote(s) lag more than 1 s: {label(daemon)} (")
    assert label(daemon) in late.stdout
    # The default --max-lag is 60 s: the same state is still current enough.
    assert status_command("-o", conf).returncode == 0

    daemon.start()
    same_tree(src, daemon.modules["backup"])
    wait_until(lambda: status_command("-o", conf, "--max-lag", "1").returncode == 0,
               timeout=15, interval=0.2)

    assert proc.terminate() == 0
    stopped = status_command("-o", conf)
    assert stopped.returncode == 3, stopped
    assert stopped.stderr == "UNKNOWN: sersyncpy has stopped\n"
    assert read_status(proc.status_path)["running"] is False
    as_json = status_command("-o", conf, "--json")
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout) == read_status(proc.status_path)
    by_path = status_command("--status-file", str(proc.status_path), "--json")
    assert (by_path.returncode, by_path.stdout) == (3, as_json.stdout)

    proc.status_path.unlink()
    missing = status_command("-o", conf)
    assert (missing.returncode, missing.stdout) == (3, "")
    assert missing.stderr.startswith("UNKNOWN: no status file")


# --------------------------------------------------------------------------- SIGUSR2


def test_sigusr2_repairs_changed_deleted_and_extra_files_on_the_replica(daemon, src, sersyncpy):
    dst = daemon.modules["backup"]
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    write(src / "changed.txt", b"the original")
    write(src / "deleted.txt", b"deleted on the replica")
    write(src / "sub/kept.txt", b"untouched")
    same_tree(src, dst)

    (dst / "changed.txt").write_bytes(b"edited on the replica, another size")
    (dst / "deleted.txt").unlink()
    write(dst / "extra.txt", b"only on the replica")
    write(dst / "extra-dir/inside", b"only on the replica")
    assert not trees_equal(src, dst)

    signalled = time.time()
    proc.proc.send_signal(signal.SIGUSR2)
    same_tree(src, dst)
    assert (dst / "changed.txt").read_bytes() == b"the original"
    # A full push of the root that worked, after the signal (the start-up resync's was
    # before it), for the remote and so for the root.
    doc = status_when(proc, lambda d: (d["remotes"][0]["last_full_sync"] or 0) > signalled,
                      message="no full sync after SIGUSR2")
    assert doc["roots"][0]["last_full_sync"] == doc["remotes"][0]["last_full_sync"]


def test_sigusr2_keeps_to_the_crontabfilter_excludes(daemon, src, sersyncpy):
    dst = daemon.modules["backup"]
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])], excludes=(r"(.*)\.log",),
                             crontab_excludes=("*.log",)))
    write(src / "kept.txt", b"the original")
    write(src / "app.log", b"never replicated")
    same_tree(src, dst, ignore=("app.log",))
    (dst / "kept.txt").write_bytes(b"edited on the replica, another size")
    write(dst / "remote.log", b"the replica's own")
    write(dst / "stray.txt", b"not in the source")

    signalled = time.time()
    proc.proc.send_signal(signal.SIGUSR2)
    same_tree(src, dst, ignore=("app.log", "remote.log"))
    # The full sync that repaired stray.txt is done: what it left stays so.
    status_when(proc, lambda d: (d["remotes"][0]["last_full_sync"] or 0) > signalled,
                message="no full sync after SIGUSR2")
    assert not (dst / "app.log").exists()
    assert (dst / "remote.log").read_bytes() == b"the replica's own"  # excluded: not deleted


# --------------------------------------------------------------------------- SIGUSR1, stderr


# Log text kept in the two tests below: the log file and stderr are what they test, their
# lines (the start-up notice, the per-batch INFO line, "reopened") and format the product.


def test_sigusr1_reopens_the_log_file_after_a_rotation(daemon, src, sersyncpy, tmp_path):
    log = tmp_path / "sersyncpy.log"
    rotated = tmp_path / "sersyncpy.log.1"
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]), "--log-file", str(log),
                     wait=False)
    wait_until(lambda: log.exists() and "replicating to" in log.read_text()
               or proc.proc.poll() is not None, timeout=30)
    assert proc.proc.poll() is None, proc.log()
    write(src / "before", b"b")
    same_tree(src, daemon.modules["backup"])
    wait_until(lambda: f"{label(daemon)}: batch of 1 paths" in log.read_text(), timeout=10)

    os.rename(log, rotated)
    old_text = rotated.read_text()
    proc.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: log.exists() and "log file reopened" in log.read_text(), timeout=10)
    write(src / "after", b"a")
    same_tree(src, daemon.modules["backup"])
    wait_until(lambda: f"{label(daemon)}: batch of 1 paths" in log.read_text(), timeout=10)

    assert rotated.read_text() == old_text  # the old lines stay where logrotate put them
    assert "replicating to" in old_text and "reopened" not in old_text
    new_lines = log.read_text().splitlines()
    assert all(TIMESTAMPED.match(line) for line in new_lines), new_lines
    assert proc.log() == ""  # nothing on stderr: the log file has it all


@pytest.mark.parametrize("journal", ["none", "matching", "other-file"])
def test_stderr_log_lines_have_a_timestamp_unless_stderr_is_the_journal(daemon, src, tmp_path,
                                                                       journal):
    conf = tmp_path / "confxml.xml"
    conf.write_text(conf_text(tmp_path, [(src, [(daemon, "backup")])]))
    stderr_path = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    with open(stderr_path, "wb") as stderr:
        st = os.fstat(stderr.fileno())
        if journal == "matching":
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal == "other-file":  # journald's stream, but our stderr went elsewhere
            other = os.stat(conf)
            env["JOURNAL_STREAM"] = f"{other.st_dev}:{other.st_ino}"
        proc = subprocess.Popen([*SERSYNCPY, "-o", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                                cwd=tmp_path)
    try:
        wait_until(lambda: "replicating to" in stderr_path.read_text()
                   or proc.poll() is not None, timeout=30)
        write(src / "f", b"f")
        same_tree(src, daemon.modules["backup"])
        wait_until(lambda: "batch of 1 paths" in stderr_path.read_text(), timeout=10)
    finally:
        stop_process(proc)
    lines = stderr_path.read_text().splitlines()
    assert len(lines) >= 3, lines
    pattern = UNTIMED if journal == "matching" else TIMESTAMPED
    strays = [line for line in lines if not pattern.match(line)]
    assert not strays, "\n".join(strays)  # a traceback would be shown whole
    if journal == "matching":
        assert lines[0].startswith("INFO sersyncpy: sersyncpy "), lines[0]


# --------------------------------------------------------------------------- <crontab>


@pytest.mark.slow
def test_crontab_every_minute_repairs_the_replica(daemon, src, sersyncpy):
    """The one test of the real minute-scale schedule (the Schedule logic itself is a unit
    test): a full push with --delete and the <crontabfilter> excludes, about 60 s after the
    start, with no signal."""
    dst = daemon.modules["backup"]
    text = confxml([(src, [(daemon, "backup")])], excludes=(r"(.*)\.log",),
                   crontab_excludes=("*.log",))
    proc = sersyncpy(with_crontab(text, 1))
    started = time.monotonic()
    started_at = time.time()
    write(src / "changed.txt", b"the original")
    write(src / "deleted.txt", b"d")
    same_tree(src, dst)
    (dst / "changed.txt").write_bytes(b"edited on the replica, another size")
    (dst / "deleted.txt").unlink()
    write(dst / "extra.txt", b"only on the replica")
    write(dst / "remote.log", b"excluded: kept")

    same_tree(src, dst, ignore=("remote.log",), timeout=80)
    took = time.monotonic() - started
    assert 55 <= took <= 80, took
    # The full sync that repaired it is <crontab>'s: a minute after the start (the start-up
    # resync's was at once), with no signal sent.
    doc = status_when(proc, lambda d: (d["remotes"][0]["last_full_sync"] or 0)
                      >= started_at + 55, timeout=10, message="no <crontab> full sync")
    assert doc["remotes"][0]["last_full_sync"] <= started_at + 80
    assert (dst / "remote.log").read_bytes() == b"excluded: kept"
