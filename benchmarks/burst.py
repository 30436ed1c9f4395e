"""B2 burst: 10,000 files of 4 KiB written into 100 new directories as fast as possible, to 3
local rsync daemons. Time until all replicas match, lag after the last write, rsync processes,
CPU seconds of sersyncpy and its children. References in the same run: one `rsync -a --delete`
per replica started when the writer ends (the physical limit), and lsyncd (default.rsync,
delay 1 and 0) when installed.

    .venv/bin/python benchmarks/burst.py [--files 10000] [--dirs 100] [--remotes 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from harness import (
    ChartData,
    Lsyncd,
    Row,
    Rows,
    Sersyncpy,
    daemons,
    identical,
    reference_rsync,
    replicas,
    scratch,
    wait_matching,
)


def write_burst(src: Path, files: int, dirs: int, size: int) -> float:
    data = os.urandom(size + 64)
    for d in range(dirs):
        os.mkdir(src / f"d{d:03}")
        for f in range(files // dirs):
            with open(src / f"d{d:03}" / f"f{f:04}", "wb") as fh:
                fh.write(data[f % 64:f % 64 + size])
    return time.monotonic()


def measure(work: Path, tool: str, args, delay: int = 0) -> dict:
    src = work / "src"
    src.mkdir(parents=True)
    with daemons(work, args.remotes) as ds:
        if tool == "rsync":
            writer_end = write_burst(src, args.files, args.dirs, args.size)
            seconds, cpu = reference_rsync(src, ds)
            result = {"lag": seconds, "cpu": cpu, "rsyncs": args.remotes}
        else:
            proc = (Sersyncpy(work, src, ds) if tool == "sersyncpy"
                    else Lsyncd(work, src, ds, delay)).start()
            writer_end = write_burst(src, args.files, args.dirs, args.size)
            done = wait_matching(src, replicas(ds))
            cpu = proc.stop()
            result = {"lag": done - writer_end, "cpu": cpu, "rsyncs": proc.rsync_runs()}
        assert all(identical(src, r) for r in replicas(ds)), f"{tool}: a replica differs"
    return result


def run(args) -> list[Row]:
    tools = [("sersyncpy", 0), ("rsync", 0)]
    if shutil.which("lsyncd"):
        tools += [("lsyncd", 1), ("lsyncd", 0)]
    results = {}
    with scratch("sersyncpy-b2-") as tmp:
        for i, (tool, delay) in enumerate(tools):
            results[(tool, delay)] = measure(Path(tmp) / str(i), tool, args, delay)
    ref = results[("rsync", 0)]
    rows = []
    chart = ChartData(f"burst of {args.files:,} files")
    for (tool, delay), r in results.items():
        name = {"sersyncpy": tool, "rsync": "plain rsync"}.get(tool, f"lsyncd delay {delay}")
        chart.cost[name] = [[r["lag"], r["cpu"]]]
        if tool == "rsync":
            continue
        lag_ratio, cpu_ratio = r["lag"] / ref["lag"], r["cpu"] / ref["cpu"]
        per_remote = r["rsyncs"] / args.remotes
        met = (lag_ratio <= 1.3 and cpu_ratio <= 2 and per_remote <= 10
               if tool == "sersyncpy" else None)
        rows.append(Row(
            "B2", f"burst {args.files} files, {args.remotes} remotes: {name}",
            f"lag {r['lag']:.2f} s, CPU {r['cpu']:.2f} s, {per_remote:.1f} rsync/remote",
            f"rsync -a --delete: lag {ref['lag']:.2f} s, CPU {ref['cpu']:.2f} s",
            f"lag {lag_ratio:.2f}x, CPU {cpu_ratio:.2f}x",
            "lag ≤ 1.3x, CPU ≤ 2x, ≤ 10 rsync/remote", met))
    return Rows(rows, chart)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10000)
    p.add_argument("--dirs", type=int, default=100)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--remotes", type=int, default=3)
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
