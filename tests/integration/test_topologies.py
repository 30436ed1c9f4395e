"""Multi-master topologies: a two-way pair and a hub with spokes.

A "host" here is a directory, an rsync daemon serving exactly that directory as its module
(in a network namespace of its own, so every host has its own address in 198.18.0.0/15) and
a sersyncpy watching that directory and pushing to the other hosts' daemons. What a daemon
writes into its module is therefore seen by its host's sersyncpy and pushed on: the echo.

All configs use commonParams "-a -u" and <delete start="true" inFullSync="false"/>: with -u
listed paths go with -c, so a copy that comes back identical is not rewritten, causes no
event, and the echo ends after one run that transfers nothing. docs/two-way.md and
docs/hub-and-spoke.md describe these setups for operators, with the counts measured here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
from conftest import tree_diff, wait_until

from integration.conftest import Sersyncpy, confxml, same_tree, write

PARAMS = "-a -u"
QUIET_SECONDS = 2.0  # no new rsync run for this long: the replication has settled
HUB_QUIET_SECONDS = 3.0
CONVERGE_TIMEOUT = 20.0


@dataclass
class Host:
    name: str
    ns: object  # integration.netns.Host
    daemon: object  # conftest.RsyncDaemon
    proc: Optional[Sersyncpy] = None

    @property
    def dir(self) -> Path:
        return self.daemon.modules["backup"]


def make_hosts(netns_host, rsync_daemon, *names: str) -> dict[str, Host]:
    hosts = {}
    for name in names:
        ns = netns_host()
        hosts[name] = Host(name, ns, rsync_daemon(address=ns.ip, netns=ns.name))
    return hosts


def config_for(host: Host, peers: list[Host]) -> str:
    text = confxml([(host.dir, [(peer.daemon, "backup") for peer in peers])], params=PARAMS)
    merged = text.replace('<delete start="true"/>', '<delete start="true" inFullSync="false"/>')
    assert merged != text, "confxml no longer writes <delete start=\"true\"/>"
    return merged


def start(sersyncpy, host: Host, peers: list[Host], *flags: str) -> Sersyncpy:
    # The status file is what settle() reads: rewritten every 0.2 s, not 2 s, it waits less.
    host.proc = sersyncpy(config_for(host, peers), *flags, env={"SERSYNCPY_STATUS_SECONDS": "0.2"})
    return host.proc


def settle(hosts, quiet: float = QUIET_SECONDS, timeout: float = 30.0) -> dict[str, int]:
    """Wait until no host ran an rsync for `quiet` seconds; return the counts. The counts are
    the status files' (every remote's rsync_runs), so the quiet time is the documents' own:
    from the first document of each host showing its count to the latest, for all hosts at
    once (a run not yet in a document, rewritten every 0.2 s here, is not taken as quiet)."""
    seen: dict[str, tuple[int, float]] = {}  # name -> (count, "updated" of its first doc)

    def quiet_for() -> Optional[dict[str, int]]:
        docs = {h.name: h.proc.status() for h in hosts}
        if any(doc is None for doc in docs.values()):
            return None
        counts = {name: sum(r["rsync_runs"] for r in doc["remotes"])
                  for name, doc in docs.items()}
        for name, count in counts.items():
            if name not in seen or seen[name][0] != count:
                seen[name] = (count, docs[name]["updated"])
        since = max(first for _, first in seen.values())
        until = min(doc["updated"] for doc in docs.values())
        return counts if until - since >= quiet else None

    return wait_until(quiet_for, timeout=timeout, interval=0.1,
                      message="rsync runs kept growing (an endless echo?)")


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after}


def converged(hosts, timeout: float = CONVERGE_TIMEOUT) -> None:
    """Every host's tree equals the first one's, and stays so for a moment."""
    first, *others = hosts
    for other in others:
        same_tree(first.dir, other.dir, timeout=timeout)


def write_with_mtime(path: Path, data: bytes, mtime: float) -> None:
    """Put `data` at `path` with `mtime` in one step: written as an ignored dotfile, dated,
    then renamed into place, so no watcher sees the file with another content or date."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.utime(tmp, (mtime, mtime))
    os.rename(tmp, path)


def received(host: Host, rel: str) -> int:
    """How many times `host`'s daemon wrote `rel` (its transfer log: "recv REL SIZE BYTES")."""
    log = host.daemon.log_file.read_text(errors="replace")
    return sum(1 for line in log.splitlines() if f" recv {rel} " in line)


def trees_report(hosts) -> str:
    return "\n".join(f"{h.name}: {sorted(p.name for p in h.dir.iterdir())}" for h in hosts)


# --------------------------------------------------------------------------- two-way pair


@pytest.fixture
def pair(netns_host, rsync_daemon, sersyncpy):
    hosts = make_hosts(netns_host, rsync_daemon, "A", "B")
    a, b = hosts["A"], hosts["B"]
    start(sersyncpy, a, [b])
    start(sersyncpy, b, [a])
    return a, b


def test_two_way_one_file_each_way_and_the_echo_ends(pair):
    a, b = pair
    base = settle(pair)
    write(a.dir / "from_a.txt", b"written on A\n")
    wait_until(lambda: (b.dir / "from_a.txt").exists(), timeout=CONVERGE_TIMEOUT)
    converged(pair)
    after_a = settle(pair)
    runs = delta(after_a, base)
    # A pushed once; B pushed the arrival back once, and that run transferred nothing.
    assert runs["A"] == 1, (runs, a.proc.log())
    assert runs["B"] <= 1, (runs, b.proc.log())
    assert (b.dir / "from_a.txt").read_bytes() == b"written on A\n"
    # The echo's run transferred nothing: A's daemon never received its own file back.
    assert (received(b, "from_a.txt"), received(a, "from_a.txt")) == (1, 0)

    write(b.dir / "from_b.txt", b"written on B\n")
    wait_until(lambda: (a.dir / "from_b.txt").exists(), timeout=CONVERGE_TIMEOUT)
    converged(pair)
    runs = delta(settle(pair), after_a)
    assert runs["B"] == 1, (runs, b.proc.log())
    assert runs["A"] <= 1, (runs, a.proc.log())
    assert (a.dir / "from_b.txt").read_bytes() == b"written on B\n"
    assert (received(a, "from_b.txt"), received(b, "from_b.txt")) == (1, 0)
    print(f"\nmeasured echo, two-way pair: A->B {delta(after_a, base)}, B->A {runs}")


def test_two_way_simultaneous_writes_of_different_files(pair):
    a, b = pair
    base = settle(pair)
    for i in range(5):
        write(a.dir / f"a{i}.txt", f"A {i}\n".encode())
        write(b.dir / f"b{i}.txt", f"B {i}\n".encode())
    converged(pair)
    names = sorted(p.name for p in a.dir.iterdir())
    assert names == sorted([f"a{i}.txt" for i in range(5)] + [f"b{i}.txt" for i in range(5)])
    runs = delta(settle(pair), base)
    assert sum(runs.values()) <= 10, runs  # bounded, whatever the batching


def test_two_way_newer_file_is_never_overwritten_by_an_older_echo(pair):
    a, b = pair
    settle(pair)
    now = time.time()
    # Both sides write f at about the same moment; B's is clearly newer.
    write_with_mtime(a.dir / "f.txt", b"old, from A\n", now)
    write_with_mtime(b.dir / "f.txt", b"new, from B\n", now + 100)
    converged(pair)
    settle(pair)
    assert received(b, "f.txt") <= 1  # at most A's copy, before B's newer one replaced it
    for host in pair:
        assert (host.dir / "f.txt").read_bytes() == b"new, from B\n", host.name
        assert int((host.dir / "f.txt").stat().st_mtime) == int(now + 100), host.name


def test_two_way_deletes_propagate_both_ways_and_stay_deleted(pair):
    a, b = pair
    write(a.dir / "doomed_a.txt", b"1\n")
    write(b.dir / "doomed_b.txt", b"2\n")
    write(a.dir / "kept.txt", b"3\n")
    converged(pair)
    settle(pair)

    (a.dir / "doomed_a.txt").unlink()
    wait_until(lambda: not (b.dir / "doomed_a.txt").exists(), timeout=CONVERGE_TIMEOUT)
    (b.dir / "doomed_b.txt").unlink()
    wait_until(lambda: not (a.dir / "doomed_b.txt").exists(), timeout=CONVERGE_TIMEOUT)
    settle(pair)
    for host in pair:  # nothing came back, and nothing else went
        assert sorted(p.name for p in host.dir.iterdir()) == ["kept.txt"], trees_report(pair)


# --------------------------------------------------------------------------- start-up merge


def test_start_up_merge_with_r_keeps_the_union_and_the_newer_version(
        netns_host, rsync_daemon, sersyncpy):
    hosts = make_hosts(netns_host, rsync_daemon, "A", "B")
    a, b = hosts["A"], hosts["B"]
    now = time.time()
    write(a.dir / "only_a.txt", b"A only\n")
    write(a.dir / "sub" / "only_a_deep.txt", b"A only, deeper\n")
    write(b.dir / "only_b.txt", b"B only\n")
    write(b.dir / "sub" / "only_b_deep.txt", b"B only, deeper\n")
    write_with_mtime(a.dir / "shared.txt", b"older version, on A\n", now - 200)
    write_with_mtime(b.dir / "shared.txt", b"newer version, on B\n", now - 100)

    start(sersyncpy, a, [b], "-r")
    start(sersyncpy, b, [a], "-r")
    pair = (a, b)
    converged(pair)
    settle(pair)
    converged(pair, timeout=1)
    expected = {"only_a.txt", "only_b.txt", "shared.txt", "sub",
                "sub/only_a_deep.txt", "sub/only_b_deep.txt"}
    for host in pair:
        found = {str(p.relative_to(host.dir)) for p in host.dir.rglob("*")}
        assert found == expected, trees_report(pair)
        assert (host.dir / "shared.txt").read_bytes() == b"newer version, on B\n", host.name
    assert received(b, "shared.txt") == 0  # the newer copy was never overwritten, even briefly
    for host in pair:  # each pushed its whole root (-r), and it worked
        assert all(r["last_full_sync"] is not None for r in host.proc.status()["remotes"])


# --------------------------------------------------------------------------- hub and spoke


def test_hub_and_spoke_reaches_everyone_and_the_echo_is_bounded(
        netns_host, rsync_daemon, sersyncpy):
    hosts = make_hosts(netns_host, rsync_daemon, "H", "N1", "N2", "N3")
    hub, nodes = hosts["H"], [hosts["N1"], hosts["N2"], hosts["N3"]]
    everyone = [hub, *nodes]
    start(sersyncpy, hub, nodes)
    for node in nodes:
        start(sersyncpy, node, [hub])
    counts = settle(everyone, quiet=HUB_QUIET_SECONDS)

    measured = []
    for node in nodes:
        name = f"from_{node.name}.txt"
        write(node.dir / name, f"written on {node.name}\n".encode())
        wait_until(lambda name=name: all((h.dir / name).exists() for h in everyone),
                   timeout=CONVERGE_TIMEOUT, message=f"{name} did not reach everyone")
        converged(everyone)
        after = settle(everyone, quiet=HUB_QUIET_SECONDS)
        runs = delta(after, counts)
        measured.append(runs)
        # The writer pushes once; the hub once per spoke; each other spoke pushes the
        # arrival back once (nothing transferred); the writer's own echo changes nothing.
        assert runs[node.name] == 1, runs
        assert runs["H"] <= len(nodes), runs
        assert sum(runs.values()) <= 2 * len(nodes), runs
        # Every copy was written once, and none went back to the writer.
        assert [received(h, name) for h in everyone] == [
            0 if h is node else 1 for h in everyone], runs
        counts = after
    print(f"\nmeasured runs per file, hub and spoke: {measured}")

    (nodes[1].dir / "from_N1.txt").unlink()
    wait_until(lambda: not any((h.dir / "from_N1.txt").exists() for h in everyone),
               timeout=CONVERGE_TIMEOUT, message="the delete did not reach everyone")
    settle(everyone, quiet=HUB_QUIET_SECONDS)
    for host in everyone:
        assert sorted(p.name for p in host.dir.iterdir()) == ["from_N2.txt", "from_N3.txt"], \
            trees_report(everyone)
    for host in nodes:
        assert not tree_diff(hub.dir, host.dir), host.name



def test_two_way_new_directory_tree_is_not_deleted_by_its_echo(pair):
    a, b = pair
    settle(pair)
    names = [f"d/sub{i % 4}/f{i:03d}.bin" for i in range(300)]
    for name in names:
        write(a.dir / name, os.urandom(20000))
    settle(pair)
    for host in pair:
        missing = [n for n in names if not (host.dir / n).exists()]
        assert not missing, f"{len(missing)} files gone from {host.name}, e.g. {missing[:3]}"
    converged(pair, timeout=1)
