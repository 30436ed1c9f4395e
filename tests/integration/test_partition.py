"""A remote unreachable: two replicas, each an rsync daemon on its own host (a network
namespace); one host is cut off for 30 s while the source keeps changing. The other replica
must not slow down, and both must equal the source once the link is back."""

from __future__ import annotations

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
    # Log text kept: no status field counts every failed rsync (a failed start-up resync
    # is in none), and none may have failed for A.
    assert not [line for line in _lines_of(proc.log(), label_a) if "failed" in line], (
        f"pushes to A failed although A stayed reachable:\n{proc.log()}"
    )
    assert entry(proc.status(), label_a)["failed_batches"] == 0
