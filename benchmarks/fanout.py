"""B7 fan-out: what sersyncpy itself costs per remote, with 1, 4 and 16 local rsync daemons,
and a relay tree to the same 16 replicas (docs/relay-chain.md).

The work is a burst of 5,000 files of 4 KiB into 10 new directories, written as fast as
possible, and for each fan-out: the lag from the last write until every replica matches, and
the CPU seconds over that window (from the start of the burst until every rsync has ended)
of sersyncpy's own process (utime + stime of /proc/PID/stat) apart from its rsync clients
(cutime + cstime: the children it reaped), each also per remote. The receiving daemons' CPU
(on the same two cores) and one `rsync -a --delete` per replica started when the writer ends
(the physical limit) are measured beside it.

Why a burst: every remote then receives the same files in about the same number of rsync
calls (~3), so CPU per remote compares like with like, and a per-remote cost that grows with
the number of remotes shows in it. Under a trickle the push policy gathers more when sixteen
remotes share two cores (each push takes longer), so the remotes would not be doing the same
work. Why 5,000 files: /proc counts CPU in ticks of 10 ms, and with one remote sersyncpy's
process and its rsync clients then use 7-10 ticks each (1,000 files gave 2: noise).

The target: CPU with 16 remotes ≤ 16.5x CPU with 1 (per-remote CPU flat), for sersyncpy's
process and for sersyncpy with its rsync clients; the ratio is taken within each repeat.

The source is a tmpfs of its own (as root), as a remote's disk is not the source's: the
fanotify watcher marks a whole file system, and with the replicas on the source's it reads
and drops every write of every local daemon, which is no cost of a real fan-out.

The relay tree: sersyncpy A pushes to 4 daemons; a sersyncpy on each of them (<attrib> on)
watches that daemon's module (each a tmpfs of its own) and pushes to 4 more daemons: 16 final
replicas, two hops. On one machine every process shares the same cores, so the relay cannot
win on lag here; the row shows what a hop costs (lag per hop, CPU of each tier). It runs in
the first --relay-runs repeats (~11 s each; B7 takes ~80 s in all).

    .venv/bin/python benchmarks/fanout.py [--remotes 1 4 16] [--files 5000] [--repeat 3]
        [--no-relay] [--relay-runs 3] [--no-reference]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

from burst import write_burst
from harness import (
    ChartData,
    Row,
    Rows,
    Sersyncpy,
    daemons,
    own_file_system,
    reference_rsync,
    replicas,
    scratch,
    stop_checked,
    stopped_on_failure,
    wait_matching,
)

PUSH = re.compile(r"(\S+::\S+): \w+ (?:of \d+ paths, exit|of \d+ paths failed)")
WATCHER = re.compile(r"watcher: (inotify|fanotify)\b")
TICK = os.sysconf("SC_CLK_TCK")
TARGET = 16.5  # CPU with 16 remotes, in CPU with 1 (a 1/32 margin for the ticks)
HUBS, PER_HUB = 4, 4  # the relay tree: A -> 4 relays -> 4 replicas each


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_and_children(pid: int) -> tuple[float, float]:
    """CPU seconds so far of process `pid` itself (all its threads) and of the children it
    has reaped: utime + stime, and cutime + cstime of /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    ticks = [int(x) for x in fields[11:15]]  # fields 14-17: utime stime cutime cstime
    return (ticks[0] + ticks[1]) / TICK, (ticks[2] + ticks[3]) / TICK


def running_children(pid: int) -> int:
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                count += len(f.read().split())
        except OSError:
            continue  # the thread ended
    return count


def quiesce(pids: list[int], timeout: float = 30) -> None:
    """Wait until none of `pids` has a child running: every rsync reaped, its CPU counted."""
    deadline = time.monotonic() + timeout
    while any(running_children(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


def same(src: Path, targets: list[Path]) -> bool:
    """Whether every target holds the files of `src` with their bytes: `diff -rq` on each at
    once (harness.identical took 3.4 s for 16 replicas of 5,000 files; these take 0.8 s)."""
    procs = [subprocess.Popen(["diff", "-rq", "--no-dereference", str(src), str(t)],
                              stdout=subprocess.DEVNULL) for t in targets]
    return all(p.wait() == 0 for p in procs)


def rsyncs_per_remote(log: str) -> list[int]:
    counts: dict[str, int] = {}
    for match in PUSH.finditer(log):
        counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return sorted(counts.values())


def watcher(log: str) -> str:
    """Which watcher sersyncpy used, from its log (inotify before it could choose)."""
    found = WATCHER.search(log)
    return found.group(1) if found else "inotify"


def tier_cpu(procs: list[Sersyncpy], before: list[tuple[float, float]]) -> tuple[float, float]:
    """(own, children) CPU seconds of `procs` since `before`, summed."""
    now = [own_and_children(p.proc.pid) for p in procs]
    return (sum(a[0] - b[0] for a, b in zip(now, before)),
            sum(a[1] - b[1] for a, b in zip(now, before)))


def measure(work: Path, tool: str, remotes: int, args) -> dict:
    src = work / "src"
    before = children_cpu()
    with own_file_system(src) as apart, daemons(work, remotes) as ds:
        if tool == "rsync":
            writer_end = write_burst(src, args.files, args.dirs, args.size)
            lag, clients = reference_rsync(src, ds)
            own, per_remote, whole, used = 0.0, [1] * remotes, clients, ""
        else:
            with stopped_on_failure(Sersyncpy(work, src, ds).start()) as proc:
                start = own_and_children(proc.proc.pid)
                writer_end = write_burst(src, args.files, args.dirs, args.size)
                # Each check walks every replica not yet matching (~5 ms per 1,000 files
                # here): a fixed 10 ms poll of 16 would take most of a core from what it
                # measures.
                done = wait_matching(src, replicas(ds), poll=0.01 * remotes)
                quiesce([proc.proc.pid])
                own, clients = tier_cpu([proc], [start])
                whole = stop_checked(proc) + proc.cpu_at_start  # its whole life: `daemons`
            lag = done - writer_end
            log = proc.log_path.read_text()
            per_remote, used = rsyncs_per_remote(log), watcher(log)
        assert same(src, replicas(ds)), f"{tool}: a replica differs"
    daemons_cpu = children_cpu() - before - whole
    return {"lag": lag, "own": own, "clients": clients, "daemons": daemons_cpu,
            "per_remote": per_remote, "watcher": used, "apart": apart}


def relay_sersyncpy(work: Path, watch: Path, ds) -> Sersyncpy:
    """A relay's sersyncpy: <attrib> on, as docs/relay-chain.md asks (rsync makes a new
    directory 0700 and sets its mode after)."""
    work.mkdir(parents=True)
    proc = Sersyncpy(work, watch, ds)
    text = proc.conf.read_text()
    assert '<attrib start="false"/>' in text
    proc.conf.write_text(text.replace('<attrib start="false"/>', '<attrib start="true"/>'))
    return proc


def measure_relay(work: Path, args) -> dict:
    src = work / "src"
    before = children_cpu()
    with ExitStack() as started:
        # The source and each relay's module on a file system of its own, as on hosts of
        # their own; the 16 final replicas share the scratch space.
        started.enter_context(own_file_system(src))
        for i in range(HUBS):
            started.enter_context(own_file_system(work / "hubs" / f"replica{i}"))
        hubs = started.enter_context(daemons(work / "hubs", HUBS))
        ds = started.enter_context(daemons(work / "leaves", HUBS * PER_HUB))
        relays = [started.enter_context(stopped_on_failure(relay_sersyncpy(
            work / f"relay{i}", hub.modules["backup"], ds[i * PER_HUB:(i + 1) * PER_HUB]).start()))
            for i, hub in enumerate(hubs)]
        top = started.enter_context(stopped_on_failure(Sersyncpy(work, src, hubs).start()))
        procs = [top, *relays]
        start = [own_and_children(p.proc.pid) for p in procs]
        writer_end = write_burst(src, args.files, args.dirs, args.size)
        hop = wait_matching(src, replicas(hubs), poll=0.01 * HUBS)
        done = wait_matching(src, replicas(ds), poll=0.01 * len(ds))
        quiesce([p.proc.pid for p in procs])
        own, clients = tier_cpu([top], start[:1])
        relay_own, relay_clients = tier_cpu(relays, start[1:])
        whole = sum(stop_checked(p) + p.cpu_at_start for p in procs)
        per_remote = rsyncs_per_remote("".join(p.log_path.read_text() for p in relays))
        assert same(src, replicas(hubs) + replicas(ds)), "relay: a replica differs"
    return {"files": args.files, "hop": hop - writer_end, "lag": done - writer_end,
            "own": own, "clients": clients, "relay_own": relay_own, "relay_clients": relay_clients,
            "daemons": children_cpu() - before - whole, "per_remote": per_remote}


def spread(values: list[float], digits: int = 2) -> str:
    """median [min–max]"""
    return (f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}–{max(values):.{digits}f}]")


def col(rs: list[dict], key: str) -> list[float]:
    return [r[key] for r in rs]


def per_remote_ms(values: list[float], remotes: int) -> str:
    return spread([1000 * v / remotes for v in values], 1)


def median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def fanout_row(remotes: int, rs: list[dict], ref: list[dict], cores: int, args) -> Row:
    def spent(r):  # the lag ÷ the CPU of every process of the replication ÷ the cores
        return r["lag"] / ((r["own"] + r["clients"] + r["daemons"]) / cores)

    reference = "(not run)"
    ratio = f"lag ÷ (all CPU ÷ {cores} cores): {spread(list(map(spent, rs)))}"
    if ref:
        reference = (f"rsync -a --delete per replica: lag {spread(col(ref, 'lag'))} s, "
                     f"clients {spread(col(ref, 'clients'))} s "
                     f"({per_remote_ms(col(ref, 'clients'), remotes)} ms per remote), "
                     f"daemons {spread(col(ref, 'daemons'))} s")
        ratio += (f"; rsync's {spread(list(map(spent, ref)))}; lag "
                  f"{median_ratio(col(rs, 'lag'), col(ref, 'lag')):.2f}x rsync's")
    used = "/".join(sorted({r["watcher"] for r in rs}))
    where = ("source on a tmpfs of its own" if all(r["apart"] for r in rs)
             else "**replicas on the source's file system**")
    return Row(
        "B7", f"fan-out, burst {args.files} files, {remotes} remote(s): sersyncpy ({used}, "
        f"{where}); median [min–max] of {len(rs)}",
        f"lag {spread(col(rs, 'lag'))} s; sersyncpy's process {spread(col(rs, 'own'))} s CPU "
        f"({per_remote_ms(col(rs, 'own'), remotes)} ms per remote), its rsync clients "
        f"{spread(col(rs, 'clients'))} s ({per_remote_ms(col(rs, 'clients'), remotes)} ms per "
        f"remote); daemons {spread(col(rs, 'daemons'))} s; "
        f"{spread([sum(r['per_remote']) / remotes for r in rs], 1)} rsync/remote",
        reference, ratio, "(none)", None)


def divide(a: float, b: float) -> float:
    return a / b if b else float("inf")  # less than a tick of CPU: too little work


def ratio_row(one: list[dict], many: list[dict], remotes: int, ref_one: list[dict],
              ref_many: list[dict], args) -> Row:
    """CPU with `remotes` in CPU with 1: the sums over the repeats (one remote's ~0.07 s is
    7 ticks of 10 ms: summed, a tick weighs less), and in brackets the least and the most
    of the repeats taken one by one (the runs of one repeat are measured side by side)."""
    def ratio(a: list[dict], b: list[dict], key) -> str:
        each = [divide(key(y), key(x)) for x, y in zip(a, b)]
        return (f"{divide(sum(map(key, b)), sum(map(key, a))):.1f}x "
                f"[{min(each):.1f}–{max(each):.1f}]")

    def own(r):
        return r["own"]

    def both(r):
        return r["own"] + r["clients"]

    reference = "(not run)"
    if ref_one and ref_many:
        reference = (f"rsync -a --delete per replica: clients' CPU "
                     f"{ratio(ref_one, ref_many, lambda r: r['clients'])}, lag "
                     f"{ratio(ref_one, ref_many, lambda r: r['lag'])}")
    sums = [divide(sum(map(key, many)), sum(map(key, one))) for key in (own, both)]
    return Row(
        "B7", f"fan-out, burst {args.files} files: {remotes} remotes against 1, sersyncpy; "
        f"the sums of {len(one)} repeats [each repeat: least–most]",
        f"CPU of sersyncpy's process {ratio(one, many, own)}, of sersyncpy and its rsync "
        f"clients {ratio(one, many, both)} (the clients alone "
        f"{ratio(one, many, lambda r: r['clients'])}); lag {ratio(one, many, lambda r: r['lag'])}",
        reference, f"process {sums[0]:.1f}x, with clients {sums[1]:.1f}x",
        f"≤ {TARGET}x each (per-remote CPU flat)", all(s <= TARGET for s in sums))


def relay_row(rs: list[dict], direct: list[dict]) -> Row:
    leaves = HUBS * PER_HUB
    cpu = [r["own"] + r["clients"] + r["relay_own"] + r["relay_clients"] for r in rs]
    reference = ratio = "(none)"
    if direct:
        direct_cpu = [r["own"] + r["clients"] for r in direct]
        reference = (f"sersyncpy to the {leaves} directly: lag {spread(col(direct, 'lag'))} s, "
                     f"CPU {spread(direct_cpu)} s (process and clients)")
        ratio = (f"lag {median_ratio(col(rs, 'lag'), col(direct, 'lag')):.2f}x, "
                 f"CPU {median_ratio(cpu, direct_cpu):.2f}x direct")
    return Row(
        "B7", f"relay tree, burst {rs[0]['files']} files: A -> {HUBS} relays -> {PER_HUB} "
        f"replicas each ({leaves}), all on this machine; median [min–max] of {len(rs)}",
        f"lag to the {HUBS} relays {spread(col(rs, 'hop'))} s, to all {leaves} "
        f"{spread(col(rs, 'lag'))} s (second hop {spread([r['lag'] - r['hop'] for r in rs])} s);"
        f" CPU: A's process {spread(col(rs, 'own'))} s, its clients {spread(col(rs, 'clients'))}"
        f" s; the relays' processes {spread(col(rs, 'relay_own'))} s, their clients "
        f"{spread(col(rs, 'relay_clients'))} s; daemons {spread(col(rs, 'daemons'))} s; "
        f"{spread([sum(r['per_remote']) / leaves for r in rs], 1)} rsync/replica on the second "
        "hop", reference, ratio, "(none)", None)


def run(args) -> list[Row]:
    cores = os.cpu_count() or 1
    tools = ["sersyncpy", "rsync"] if args.reference else ["sersyncpy"]
    setups = [(tool, n) for n in args.remotes for tool in tools]
    results: dict[tuple[str, int], list[dict]] = {}
    with scratch("sersyncpy-b7-") as tmp:
        for i in range(args.repeat):
            # Rotate the order, so a neighbour's load does not always land on one setup.
            # The relay tree (~10 s a run) runs in the first `relay_runs` repeats.
            shift = i % len(setups)
            relay = [("relay", HUBS * PER_HUB)] if args.relay and i < args.relay_runs else []
            for tool, n in setups[shift:] + setups[:shift] + relay:
                work = Path(tmp) / f"{tool}-{n}-{i}"
                began = time.monotonic()
                r = measure_relay(work, args) if tool == "relay" else measure(work, tool, n, args)
                shutil.rmtree(work)  # up to 400 MB each, in memory
                results.setdefault((tool, n), []).append(r)
                print(f"run {i}, {n} remotes, {tool}: lag {r['lag']:.2f} s, process "
                      f"{r['own']:.2f} s, clients {r['clients']:.2f} s, daemons "
                      f"{r['daemons']:.2f} s" + (f", relays {r['relay_own']:.2f} s + "
                                                 f"{r['relay_clients']:.2f} s, first hop "
                                                 f"{r['hop']:.2f} s" if tool == "relay" else "")
                      + f", rsyncs per remote {r['per_remote']} "
                      f"({time.monotonic() - began:.1f} s in all)", flush=True)
    rows = [fanout_row(n, results[("sersyncpy", n)], results.get(("rsync", n), []), cores, args)
            for n in args.remotes]
    if 1 in args.remotes:
        rows += [ratio_row(results[("sersyncpy", 1)], results[("sersyncpy", n)], n,
                           results.get(("rsync", 1), []), results.get(("rsync", n), []), args)
                 for n in args.remotes if n > 1 and n == max(args.remotes)]
    if ("relay", HUBS * PER_HUB) in results:
        rows.append(relay_row(results[("relay", HUBS * PER_HUB)],
                              results.get(("sersyncpy", HUBS * PER_HUB), [])))
    return Rows(rows, fanout_chart(results, args))


def fanout_chart(results: dict[tuple[str, int], list[dict]], args) -> ChartData:
    """Lag and CPU per remote count, every repeat: sersyncpy, plain rsync, the relay tree."""
    chart = ChartData(f"fan-out, burst of {args.files:,} files")
    series = {  # label: (tool, CPU seconds of a run)
        "sersyncpy's process": ("sersyncpy", lambda r: r["own"]),
        "sersyncpy and its rsync clients": ("sersyncpy", lambda r: r["own"] + r["clients"]),
        "plain rsync's clients": ("rsync", lambda r: r["clients"]),
        "relay tree: every sersyncpy and its clients": (
            "relay", lambda r: r["own"] + r["clients"] + r["relay_own"] + r["relay_clients"]),
    }
    for (tool, n), rs in results.items():
        name = {"rsync": "plain rsync", "relay": "relay tree (2 hops)"}.get(tool, tool)
        chart.fanout.setdefault(name, {})[n] = col(rs, "lag")
        for label, (of, cpu) in series.items():
            if of == tool:
                chart.fanout_cpu.setdefault(label, {})[n] = [cpu(r) for r in rs]
    return chart


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--remotes", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--dirs", type=int, default=10)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip the plain rsync runs")
    p.add_argument("--no-relay", dest="relay", action="store_false",
                   help="skip the relay tree")
    p.add_argument("--relay-runs", type=int, default=3,
                   help="runs of the relay tree, in the first repeats (default 3)")
    return p


if __name__ == "__main__":
    for line in run(parser().parse_args()):
        print(line.markdown())
