"""A remote unreachable: two replicas, each an rsync daemon on its own host (a network
namespace); one host is cut off for 30 s while the source keeps changing. The other replica
must not slow down, and both must equal the source once the link is back."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import trees_equal, wait_until

from integration.conftest import confxml, same_tree, status_when, write

OUTAGE_SECONDS = 30.0
WRITE_INTERVAL = 0.05  # one new file this often, for the whole outage
MAX_LAG = 3.0  # how long a file may take to reach the replica that is still reachable
CATCH_UP_TIMEOUT = 60.0  # backoff in the lanes tops out at 60 s
# B's transfer in flight when the link went down is restarted once B answers again
# (stall.py), instead of waiting for TCP's next retransmission (9 s after a 20 s outage,
# measured before the restart existed). 2 s on a quiet machine; room for a loaded one.
CATCH_UP_LIMIT = 5.0
# rsyncd's own I/O timeout: the daemon side of a connection cut by the partition exits on
# its own instead of waiting for a peer that gave up long ago.
DAEMON_OPTIONS = {"timeout": "60"}


class Feed:
    """Writes numbered files into `src` and times each one's arrival in `replica`."""

    def __init__(self, src: Path, replica: Path) -> None:
        self.src, self.replica = src, replica
        self.written: list[str] = []
        self.pending: dict[str, tuple[bytes, float]] = {}  # name -> (content, written at)
        self.lags: list[float] = []

    def write_next(self) -> None:
        name = f"during/f{len(self.written):05d}"
        data = f"{name} {time.time()}\n".encode()
        write(self.src / name, data)
        self.written.append(name)
        self.pending[name] = (data, time.monotonic())

    def collect(self) -> None:
        """Note the pending files that have reached the replica, with their content."""
        now = time.monotonic()
        for name, (data, written_at) in list(self.pending.items()):
            try:
                arrived = (self.replica / name).read_bytes() == data
            except FileNotFoundError:
                continue
            if arrived:
                self.lags.append(now - written_at)
                del self.pending[name]

    def oldest_wait(self) -> float:
        """Seconds the oldest file not yet in the replica has been waiting (0 if none)."""
        now = time.monotonic()
        return max((now - written_at for _, written_at in self.pending.values()), default=0.0)


def _connects(host_ip: str, port: int, timeout: float = 1.0) -> bool:
    """True if a TCP connection opens; False if it hangs; any other error is raised."""
    try:
        socket.create_connection((host_ip, port), timeout=timeout).close()
    except socket.timeout:
        return False
    return True


def _interfaces() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                          check=True).stdout


def test_link_down_is_a_silent_partition_and_destroy_leaves_nothing(netns_host, rsync_daemon):
    host = netns_host()
    daemon = rsync_daemon(address=host.ip, netns=host.name)
    assert _connects(host.ip, daemon.port)
    host.link_down()
    # Packets vanish: a connect hangs, as across a dead router, rather than failing at once.
    assert not _connects(host.ip, daemon.port)
    host.link_up()
    wait_until(lambda: _connects(host.ip, daemon.port), timeout=10)
    daemon.stop()
    host.destroy()
    assert host.name not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                           text=True, check=True).stdout
    assert f"{host.name}h" not in _interfaces()


def _lines_of(log: str, label: str) -> list[str]:
    return [line for line in log.splitlines() if f"{label}: " in line]


def entry(doc: dict, label: str) -> dict:
    (found,) = [r for r in doc["remotes"] if r["remote"] == label]
    return found


@pytest.mark.slow
def test_one_remote_cut_off_does_not_slow_the_other_and_catches_up(
    netns_host, rsync_daemon, sersyncpy, src, record_property
):
    host_a, host_b = netns_host(), netns_host()
    daemon_a = rsync_daemon(address=host_a.ip, netns=host_a.name, options=DAEMON_OPTIONS)
    daemon_b = rsync_daemon(address=host_b.ip, netns=host_b.name, options=DAEMON_OPTIONS)
    replica_a, replica_b = daemon_a.modules["backup"], daemon_b.modules["backup"]
    label_a = f"{host_a.ip}:{daemon_a.port}::backup"
    label_b = f"{host_b.ip}:{daemon_b.port}::backup"
    proc = sersyncpy(confxml([(src, [(daemon_a, "backup"), (daemon_b, "backup")])]))

    write(src / "before/first", b"before the outage")
    same_tree(src, replica_a)
    same_tree(src, replica_b)

    feed = Feed(src, replica_a)
    host_b.link_down()
    outage_end = time.monotonic() + OUTAGE_SECONDS
    while time.monotonic() < outage_end:
        feed.write_next()
        feed.collect()
        waited = feed.oldest_wait()
        assert waited <= MAX_LAG, (
            f"replica A fell behind while B was cut off: a file waited {waited:.1f} s "
            f"({len(feed.pending)} pending)\n{proc.log()}"
        )
        time.sleep(WRITE_INTERVAL)  # the scenario: a steady trickle of changes
    wait_until(lambda: feed.collect() or not feed.pending, timeout=MAX_LAG,
               message="replica A did not get the last files of the outage")

    # The partition was real: B missed the outage's files and its lane saw failures.
    assert not (replica_b / feed.written[-1]).exists()
    status_when(proc, lambda d: entry(d, label_b)["failed_batches"] >= 1, timeout=5,
                message=f"no failed push to B during the outage:\n{proc.log()}")

    host_b.link_up()
    link_up_at = time.monotonic()
    try:
        wait_until(lambda: trees_equal(src, replica_b), timeout=CATCH_UP_TIMEOUT, interval=0.05)
        catch_up = time.monotonic() - link_up_at
    except AssertionError:
        catch_up = None
    lags = sorted(feed.lags)
    record_property("outage_seconds", OUTAGE_SECONDS)
    record_property("files_written_during_outage", len(feed.written))
    record_property("replica_a_max_lag_seconds", round(lags[-1], 3))
    record_property("replica_a_median_lag_seconds", round(lags[len(lags) // 2], 3))
    record_property("replica_b_catch_up_seconds",
                    round(catch_up, 3) if catch_up is not None else "not within 60 s")
    print(f"outage {OUTAGE_SECONDS:g} s, {len(feed.written)} files written; replica A lag "
          f"median {lags[len(lags) // 2]:.3f} s, max {lags[-1]:.3f} s; replica B matched "
          + (f"{catch_up:.1f} s after link-up" if catch_up is not None
             else f"not within {CATCH_UP_TIMEOUT:g} s of link-up"))
    print("lane B log:\n  " + "\n  ".join(_lines_of(proc.log(), label_b)))

    same_tree(src, replica_a, timeout=CATCH_UP_TIMEOUT)
    same_tree(src, replica_b, timeout=CATCH_UP_TIMEOUT)
    assert catch_up is not None and catch_up <= CATCH_UP_LIMIT, (
        f"replica B matched {catch_up} s after link-up (limit {CATCH_UP_LIMIT} s)")
    # Log text kept: no status field counts every failed rsync (a failed start-up resync
    # is in none), and none may have failed for A.
    assert not [line for line in _lines_of(proc.log(), label_a) if "failed" in line], (
        f"pushes to A failed although A stayed reachable:\n{proc.log()}"
    )
    assert entry(proc.status(), label_a)["failed_batches"] == 0


STALL_OUTAGE_SECONDS = 15.0
STALL_FILE_BYTES = 3 * 1024 * 1024
STALL_BWLIMIT = "--bwlimit=1000"  # KiB/s: the 3 MiB file takes ~3 s, long enough to cut
STALL_LIMIT = 7.0  # the whole file again (~3 s), plus room; without the restart: ~15 s


@pytest.mark.slow
def test_a_transfer_stalled_by_an_outage_is_restarted_once_the_remote_answers(
    netns_host, rsync_daemon, sersyncpy, src
):
    # A transfer in flight when the link goes: TCP backs its retransmissions off through
    # the outage, and after a 15 s one the next may come ~10 s after the link is back.
    host = netns_host()
    daemon = rsync_daemon(address=host.ip, netns=host.name, options=DAEMON_OPTIONS)
    replica = daemon.modules["backup"]
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])], params=f"-a {STALL_BWLIMIT}",
                             timeout=None))  # rsync's I/O timeout: 60 s, past the outage
    write(src / "first", b"x")
    same_tree(src, replica)
    write(src / "big", os.urandom(STALL_FILE_BYTES))
    # Cut the link once the receiver has part of it: rsync's temporary file is growing.
    wait_until(lambda: any(p.name.startswith(".big.") and p.stat().st_size > 256 * 1024
                           for p in replica.iterdir()), timeout=10, interval=0.02,
               message="the transfer of big did not start")
    host.link_down()
    time.sleep(STALL_OUTAGE_SECONDS)  # the scenario itself: an outage of this length
    host.link_up()
    link_up_at = time.monotonic()
    wait_until(lambda: (replica / "big").exists()
               and (replica / "big").read_bytes() == (src / "big").read_bytes(),
               timeout=60, interval=0.05, message=f"big never arrived:\n{proc.log()}")
    caught_up = time.monotonic() - link_up_at
    print(f"outage {STALL_OUTAGE_SECONDS:g} s mid-transfer; big arrived {caught_up:.1f} s "
          "after link-up")
    # The receiver of the killed transfer removes its temporary file once its own
    # connection ends: TCP's next retransmission meets our reset.
    wait_until(lambda: trees_equal(src, replica), timeout=60, interval=0.1,
               message=f"the replica never matched:\n{proc.log()}")
    assert caught_up <= STALL_LIMIT, (
        f"matched {caught_up:.1f} s after link-up (limit {STALL_LIMIT} s):\n{proc.log()}")
