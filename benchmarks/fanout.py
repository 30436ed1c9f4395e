"""B7 fan-out: B2's burst at a tenth of its size (1,000 files of 4 KiB into 10 new directories,
written as fast as possible) to 1, 4 and 16 local rsync daemons. For each fan-out: the lag from
the last write until every replica matches, the CPU seconds of sersyncpy and its children, and
lag ÷ (CPU seconds ÷ cores): near 1 when that work is spread over every core and nothing waits.
The daemons' own CPU (the receiving side, on the same cores) is reported beside it, and so is
one `rsync -a --delete` per replica started when the writer ends (the physical limit).

    .venv/bin/python benchmarks/fanout.py [--remotes 1 4 16] [--files 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import time
from pathlib import Path

from burst import write_burst
from harness import (
    Row,
    Sersyncpy,
    daemons,
    identical,
    log_offsets,
    reference_rsync,
    replicas,
    scratch,
    traffic,
    wait_matching,
)

PUSH = re.compile(r"(\S+::\S+): \w+ (?:of \d+ paths, exit|of \d+ paths failed)")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rsyncs_per_remote(log: str) -> list[int]:
    counts: dict[str, int] = {}
    for match in PUSH.finditer(log):
        counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return sorted(counts.values())


def measure(work: Path, tool: str, remotes: int, args) -> dict:
    src = work / "src"
    src.mkdir(parents=True)
    before = children_cpu()
    with daemons(work, remotes) as ds:
        offsets = log_offsets(ds)
        if tool == "rsync":
            writer_end = write_burst(src, args.files, args.dirs, args.size)
            lag, cpu = reference_rsync(src, ds)
            per_remote = [1] * remotes
        else:
            proc = Sersyncpy(work, src, ds).start()
            writer_end = write_burst(src, args.files, args.dirs, args.size)
            # Each check walks every replica not yet matching (~5 ms per 1,000 files here):
            # a fixed 10 ms poll of 16 would take most of a core from what it measures.
            done = wait_matching(src, replicas(ds), poll=0.01 * remotes)
            cpu = proc.stop()
            lag = done - writer_end
            per_remote = rsyncs_per_remote(proc.log_path.read_text())
        assert all(identical(src, r) for r in replicas(ds)), f"{tool}: a replica differs"
        received = sum(t.received for t in traffic(ds, offsets)) / remotes
        time.sleep(0.2)  # the daemons reap their last connections, so their CPU is counted
    daemons_cpu = children_cpu() - before - cpu
    return {"lag": lag, "cpu": cpu, "daemons": daemons_cpu, "per_remote": per_remote,
            "received": received}


def spread(values: list[float], digits: int = 2) -> str:
    """median [min–max]"""
    return (f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}–{max(values):.{digits}f}]")


def row(tool: str, remotes: int, rs: list[dict], cores: int, args) -> Row:
    figure = [r["lag"] / (r["cpu"] / cores) for r in rs]
    with_daemons = [r["lag"] / ((r["cpu"] + r["daemons"]) / cores) for r in rs]
    rsyncs = [sum(r["per_remote"]) / remotes for r in rs]
    fewest = min(min(r["per_remote"]) for r in rs)
    most = max(max(r["per_remote"]) for r in rs)
    name = "sersyncpy" if tool == "sersyncpy" else "rsync -a --delete per replica"
    target = tool == "sersyncpy" and remotes == 16
    return Row(
        "B7", f"fan-out, burst {args.files} files, {remotes} remote(s): {name}; "
        f"median [min–max] of {len(rs)}",
        f"lag {spread([r['lag'] for r in rs])} s, CPU {spread([r['cpu'] for r in rs])} s "
        f"(daemons {spread([r['daemons'] for r in rs])} s), {spread(rsyncs, 1)} rsync/remote "
        f"({fewest}–{most} on one remote), "
        f"{spread([r['received'] / 2**20 for r in rs])} MiB received per remote",
        f"CPU ÷ {cores} cores: {spread([r['cpu'] / cores for r in rs])} s",
        f"lag ÷ (CPU ÷ cores) {spread(figure)}; counting the daemons {spread(with_daemons)}",
        "≤ 1.3" if target else "(none)",
        statistics.median(figure) <= 1.3 if target else None)


def run(args) -> list[Row]:
    cores = os.cpu_count() or 1
    tools = ["sersyncpy", "rsync"] if args.reference else ["sersyncpy"]
    results: dict[tuple[str, int], list[dict]] = {}
    with scratch("sersyncpy-b7-") as tmp:
        for i in range(args.repeat):
            # Rotate the order, so a neighbour's load does not always land on one fan-out.
            shift = i % len(args.remotes)
            for n in args.remotes[shift:] + args.remotes[:shift]:
                for tool in tools:
                    r = measure(Path(tmp) / f"{tool}-{n}-{i}", tool, n, args)
                    results.setdefault((tool, n), []).append(r)
                    print(f"run {i}, {n} remotes, {tool}: lag {r['lag']:.2f} s, CPU "
                          f"{r['cpu']:.2f} s, daemons {r['daemons']:.2f} s, rsyncs per "
                          f"remote {r['per_remote']}, {r['received'] / 2**20:.2f} MiB each",
                          flush=True)
    return [row(tool, n, results[(tool, n)], cores, args)
            for n in args.remotes for tool in tools]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--remotes", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--dirs", type=int, default=10)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip the plain rsync runs")
    return p


if __name__ == "__main__":
    for line in run(parser().parse_args()):
        print(line.markdown())
