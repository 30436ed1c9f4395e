"""A relay chain A -> B -> C (docs/relay-chain.md).

A's sersyncpy watches A's directory and pushes to B's rsync daemon; B's sersyncpy watches
that daemon's module directory and pushes to C's daemon. B and C are hosts of their own
(network namespaces); both sersyncpy processes run here. rsync writes into B's module through
dotfile temp names (`.name.XXXXXX`), which B's sersyncpy ignores, and renames them into
place, which it sees as the file arriving."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import assert_trees_equal, trees_equal, wait_until

from integration.conftest import Sersyncpy, confxml, same_tree, status_when, write

LAG_SAMPLES = 8
MAX_RELAY_LAG = 3.0  # seconds from a write on A until the file is on C
B_DAEMON_OUTAGE = 3.0  # seconds B's rsync daemon is down while A writes


@dataclass
class Chain:
    a_dir: Path
    b_dir: Path  # B's rsync module, watched by B's sersyncpy
    c_dir: Path  # C's rsync module
    daemon_b: object
    daemon_c: object
    proc_a: Sersyncpy
    proc_b: Sersyncpy


def make_chain(netns_host, rsync_daemon, sersyncpy, src: Path, a_params: str = "-a") -> Chain:
    host_b, host_c = netns_host(), netns_host()
    daemon_b = rsync_daemon(address=host_b.ip, netns=host_b.name)
    daemon_c = rsync_daemon(address=host_c.ip, netns=host_c.name)
    b_dir, c_dir = daemon_b.modules["backup"], daemon_c.modules["backup"]
    # B first: a relay node runs with -r, so it starts by making C equal to its module.
    # <attrib> on: rsync makes a directory 0700 and chmods it after (an ATTRIB event); a new
    # directory pushed before the chmod would otherwise stay 0700 on C.
    proc_b = sersyncpy(confxml([(b_dir, [(daemon_c, "backup")])], attrib=True), "-r")
    proc_a = sersyncpy(confxml([(src, [(daemon_b, "backup")])], params=a_params), "-r")
    return Chain(src, b_dir, c_dir, daemon_b, daemon_c, proc_a, proc_b)


def dirs_first(chain: Chain, *rels: str) -> None:
    """Make directories on A and wait until C has them. A directory new on B is pushed whole
    and could race rsync's temp files being written into it (see the last test), so the
    tests other than that one write their files into directories that B already has."""
    for rel in rels:
        (chain.a_dir / rel).mkdir(parents=True, exist_ok=True)
    same_tree(chain.a_dir, chain.c_dir)


def converge_seconds(src, dst, since, record_property, name, timeout=30):
    same_tree(src, dst, timeout=timeout, settle=0)
    seconds = time.monotonic() - since
    record_property(name, round(seconds, 2))
    print(f"{name}: {seconds:.2f} s")
    return seconds


def _has(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def test_changes_on_a_reach_c_and_the_lag_adds_up(netns_host, rsync_daemon, sersyncpy, src,
                                                   record_property):
    chain = make_chain(netns_host, rsync_daemon, sersyncpy, src)
    a, b, c = chain.a_dir, chain.b_dir, chain.c_dir

    # Files, a directory tree, then renames and deletes, each step checked on C.
    dirs_first(chain, "lag", *(f"tree/d{d}/deep" for d in range(4)))
    write(a / "top.txt", b"top")
    for i in range(20):
        write(a / "tree" / f"d{i % 4}" / "deep" / f"f{i}", os.urandom(100 + i))
    os.symlink("top.txt", a / "link")
    same_tree(a, b)
    same_tree(a, c)

    (a / "top.txt").rename(a / "top-renamed.txt")  # a file rename
    (a / "tree" / "d1").rename(a / "tree" / "d1-moved")  # a directory rename
    (a / "tree" / "d2" / "deep" / "f2").unlink()  # a file deleted
    for path in sorted((a / "tree" / "d3").rglob("*"), reverse=True):  # a tree deleted
        path.rmdir() if path.is_dir() else path.unlink()
    (a / "tree" / "d3").rmdir()
    same_tree(a, b)
    same_tree(a, c)
    assert not (c / "top.txt").exists() and not (c / "tree" / "d1").exists()
    assert not (c / "tree" / "d3").exists()
    # The renamed directory's files reached C whole (B's --link-dest hard links were pushed).
    assert (c / "tree" / "d1-moved" / "deep" / "f5").read_bytes() == \
        (a / "tree" / "d1-moved" / "deep" / "f5").read_bytes()

    # The lag, one file at a time: from the write on A until it is on B, and on C.
    lags_b, lags_c = [], []
    for i in range(LAG_SAMPLES):
        data = os.urandom(4096)
        seen: dict[str, float] = {}
        written = time.monotonic()
        write(a / "lag" / f"s{i}", data)

        def arrived(i=i, data=data, seen=seen, written=written) -> bool:
            # B before C in each round: C's copy comes from B, so it cannot be seen first.
            for name, root in (("b", b), ("c", c)):
                if name not in seen and _has(root / "lag" / f"s{i}", data):
                    seen[name] = time.monotonic() - written
            return len(seen) == 2

        wait_until(arrived, timeout=MAX_RELAY_LAG * 3, interval=0.005,
                   message=f"sample {i} did not reach B and C")
        lags_b.append(seen["b"])
        lags_c.append(seen["c"])
        assert seen["c"] >= seen["b"]

    med_b, med_c = sorted(lags_b)[LAG_SAMPLES // 2], sorted(lags_c)[LAG_SAMPLES // 2]
    for name, value in (("lag_a_to_b_median_seconds", med_b), ("lag_a_to_b_max_seconds",
                        max(lags_b)), ("lag_a_to_c_median_seconds", med_c),
                        ("lag_a_to_c_max_seconds", max(lags_c))):
        record_property(name, round(value, 3))
    print(f"A->B lag: median {med_b:.3f} s, max {max(lags_b):.3f} s; "
          f"A->C lag: median {med_c:.3f} s, max {max(lags_c):.3f} s "
          f"({LAG_SAMPLES} samples: B {[round(x, 3) for x in lags_b]}, "
          f"C {[round(x, 3) for x in lags_c]})")
    assert med_c >= med_b
    assert max(lags_c) <= MAX_RELAY_LAG, f"C took {max(lags_c):.2f} s"
    same_tree(a, c)


def test_relay_restarted_with_r_loses_nothing_without_r_misses_changes(
        netns_host, rsync_daemon, sersyncpy, src, record_property):
    chain = make_chain(netns_host, rsync_daemon, sersyncpy, src)
    a, b, c = chain.a_dir, chain.b_dir, chain.c_dir
    dirs_first(chain, "before", "after")
    for i in range(10):
        write(a / "before" / f"f{i}", b"%d" % i)
    same_tree(a, c)

    # B's sersyncpy stops; A keeps changing: B's module follows, C does not.
    assert chain.proc_b.terminate() == 0
    write(a / "while-down" / "new", b"written while B's relay was down")
    (a / "before" / "f0").unlink()
    (a / "before" / "f1").rename(a / "before" / "f1-renamed")
    same_tree(a, b)
    assert not trees_equal(a, c)

    # Restarted without -r (the stop was clean): the start-up resync brings what arrived
    # meanwhile (an earlier sersyncpy needed -r for it), and live changes go on at once.
    chain.proc_b.flags = ()
    restarted = time.monotonic()
    chain.proc_b.start()
    write(a / "after" / "probe", b"after the restart")
    wait_until(lambda: _has(c / "after" / "probe", b"after the restart"), timeout=10,
               message="B's relay is not live after its restart")
    converge_seconds(a, c, restarted, record_property, "seconds_after_relay_restart")


def test_b_daemon_down_a_retries_and_c_follows(netns_host, rsync_daemon, sersyncpy, src,
                                              record_property):
    chain = make_chain(netns_host, rsync_daemon, sersyncpy, src)
    a, b, c = chain.a_dir, chain.b_dir, chain.c_dir
    write(a / "first", b"first")
    dirs_first(chain, "during")

    chain.daemon_b.stop()
    outage_end = time.monotonic() + B_DAEMON_OUTAGE
    i = 0
    while time.monotonic() < outage_end:  # the scenario: A writes all through the outage
        write(a / "during" / f"f{i}", b"%d" % i)
        i += 1
        time.sleep(0.05)
    (a / "first").unlink()
    status_when(chain.proc_a, lambda d: d["remotes"][0]["failed_batches"] >= 1, timeout=10,
                message="A never failed a push while B's daemon was down")
    assert not (b / "during" / "f0").exists()

    chain.daemon_b.start()  # same port: the first start found it free
    back = time.monotonic()
    converge_seconds(a, b, back, record_property, "b_seconds_after_daemon_back", timeout=70)
    converge_seconds(a, c, back, record_property, "c_seconds_after_daemon_back", timeout=70)
    print(f"{i} files written during the {B_DAEMON_OUTAGE:g} s outage")


def test_burst_of_2000_small_files_reaches_c(netns_host, rsync_daemon, sersyncpy, src,
                                            record_property):
    chain = make_chain(netns_host, rsync_daemon, sersyncpy, src)
    dirs_first(chain, *(f"burst{d}" for d in range(20)))
    started = time.monotonic()
    for i in range(2000):
        write(chain.a_dir / f"burst{i % 20}" / f"f{i}", b"%d" % i)
    written = time.monotonic()
    record_property("burst_write_seconds", round(written - started, 2))
    converge_seconds(chain.a_dir, chain.b_dir, written, record_property,
                     "burst_b_seconds_after_last_write")
    converge_seconds(chain.a_dir, chain.c_dir, written, record_property,
                     "burst_c_seconds_after_last_write")


def test_relay_full_sync_during_an_incoming_transfer_leaves_no_temp_file_on_c(
        netns_host, rsync_daemon, sersyncpy, src):
    # A's pushes are slowed so that rsync's temp file on B lives for seconds.
    chain = make_chain(netns_host, rsync_daemon, sersyncpy, src, a_params="-a --bwlimit=400")
    a, b, c = chain.a_dir, chain.b_dir, chain.c_dir
    write(a / "first", b"first")
    same_tree(a, c)

    assert chain.proc_b.terminate() == 0
    data = os.urandom(2 << 20)  # ~5 s at 400 KB/s
    write(a / "big", data)
    wait_until(lambda: any(p.name.startswith(".big.") for p in b.iterdir()), timeout=10,
               message="rsync's temp file never appeared on B")
    chain.proc_b.start()  # with -r: its full push runs while the temp file grows on B
    # -r's full push is done: the restarted process's remote had its root pushed whole.
    status_when(chain.proc_b, lambda d: all(r["last_full_sync"] for r in d["remotes"]),
                timeout=10, message="B's -r full sync did not end")
    wait_until(lambda: _has(c / "big", data), timeout=30, message="big never reached C")
    same_tree(a, b, timeout=5)
    # C must not keep rsync's temp file from B (a partial copy under a name A never had).
    assert_trees_equal(a, c)
