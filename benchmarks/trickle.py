"""B3 trickle: 200 files of 1 KiB written one every 25 ms, to 3 local rsync daemons. Per-file
latency from the source file's close() until it is on every replica with its full size, seen
by an inotify watcher on the replicas (rsync renames its temp file into place): p50, p95, p99
of the slowest replica. References in the same run, on daemons of their own: one rsync call
for one 1 KiB file to one daemon (sersyncpy's connection options), and the same call to 3
daemons in parallel; medians, half measured before the trickle and half after.

    .venv/bin/python benchmarks/trickle.py [--files 200] [--interval 0.025] [--remotes 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

from harness import (
    ChartData,
    Row,
    Rows,
    Sersyncpy,
    daemons,
    identical,
    replicas,
    scratch,
    wait_matching,
)
from inotify_simple import INotify
from inotify_simple import flags as F


class ReplicaWatcher(threading.Thread):
    """Records when each name first appears with `size` bytes in each replica directory."""

    def __init__(self, dirs: list[Path], size: int):
        super().__init__(name="replica watcher", daemon=True)
        self.size = size
        self.inotify = INotify()
        self.wds = {self.inotify.add_watch(d, F.MOVED_TO | F.CLOSE_WRITE): i
                    for i, d in enumerate(dirs)}
        self.dirs = dirs
        self.seen: list[dict[str, float]] = [{} for _ in dirs]
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for ev in self.inotify.read(timeout=100):
                now = time.monotonic()
                i = self.wds.get(ev.wd)
                if i is None or ev.name.startswith(".") or ev.name in self.seen[i]:
                    continue  # a temp file (.name.XXXXXX) or a name seen already
                try:
                    full = os.stat(self.dirs[i] / ev.name).st_size == self.size
                except FileNotFoundError:
                    full = False
                if full:
                    self.seen[i][ev.name] = now

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.inotify.close()


def trickle(src: Path, files: int, interval: float, size: int) -> dict[str, float]:
    """Write the files at a steady pace; returns each name's close() time."""
    data = os.urandom(size + 64)
    closed = {}
    start = time.monotonic()
    for i in range(files):
        name = f"f{i:04}"
        with open(src / name, "wb") as fh:
            fh.write(data[i % 64:i % 64 + size])
        closed[name] = time.monotonic()
        time.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))
    return closed


def one_call(d, src: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["rsync", "-a", "--sockopts=TCP_NODELAY", f"--port={d.port}",
         f"--password-file={d.password_file}", name, f"{d.user}@127.0.0.1::backup/"],
        cwd=src)


def reference_calls(ds, src: Path, calls: int, size: int, tag: str) -> tuple[list, list]:
    """`calls` single-file rsync calls to ds[0], then `calls` to all of ds in parallel;
    each sends a new 1 KiB file. Returns both lists of seconds."""
    single, parallel = [], []
    for i in range(calls):
        name = f"{tag}s{i:03}"
        (src / name).write_bytes(os.urandom(size))
        started = time.monotonic()
        one_call(ds[0], src, name).wait()
        single.append(time.monotonic() - started)
    for i in range(calls):
        name = f"{tag}p{i:03}"
        (src / name).write_bytes(os.urandom(size))
        started = time.monotonic()
        for p in [one_call(d, src, name) for d in ds]:
            p.wait()
        parallel.append(time.monotonic() - started)
    return single, parallel


def percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def measure(work: Path, args) -> dict:
    src, ref_src = work / "src", work / "refsrc"
    src.mkdir(parents=True)
    ref_src.mkdir()
    half = args.calls // 2
    with daemons(work / "ref", args.remotes) as ref_ds, daemons(work, args.remotes) as ds:
        single, parallel = reference_calls(ref_ds, ref_src, half, args.size, "a")
        watcher = ReplicaWatcher(replicas(ds), args.size)
        watcher.start()
        proc = Sersyncpy(work, src, ds).start()
        closed = trickle(src, args.files, args.interval, args.size)
        wait_matching(src, replicas(ds))
        cpu = proc.stop()
        watcher.stop()
        assert all(identical(src, r) for r in replicas(ds)), "a replica differs"
        more_single, more_parallel = reference_calls(ref_ds, ref_src, args.calls - half,
                                                     args.size, "b")
    missing = [(name, i) for name in closed for i, seen in enumerate(watcher.seen)
               if name not in seen]
    assert not missing, f"the replica watcher missed {missing[:5]}"
    latency = [max(seen[name] for seen in watcher.seen) - t for name, t in closed.items()]
    return {"p": percentiles(latency), "max": max(latency), "cpu": cpu,
            "rsyncs": proc.rsync_runs() / args.remotes,
            "single": percentiles(single + more_single),
            "parallel": percentiles(parallel + more_parallel),
            "samples": {"latency": latency, "single": single + more_single,
                        "parallel": parallel + more_parallel}}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def row(args, remotes: int, r: dict) -> Row:
    p50, p95, p99 = r["p"]
    one, par = r["single"][0], r["parallel"][0]
    what = (f"trickle {args.files} x {args.size} B every {args.interval * 1000:g} ms, "
            f"{remotes} remote{'s' if remotes > 1 else ''}: sersyncpy")
    judged = remotes == args.remotes
    reference = f"one rsync call: p50 {ms(one)} ms, p99 {ms(r['single'][2])} ms"
    ratio = f"p50 {p50 / one:.2f}x, p99 {p99 / one:.2f}x one call"
    if remotes > 1:
        reference += (f"; to {remotes} in parallel: p50 {ms(par)} ms, "
                      f"p99 {ms(r['parallel'][2])} ms")
        ratio += f"; p50 {p50 / par:.2f}x, p99 {p99 / par:.2f}x the parallel p50"
    return Row(
        "B3", what if judged else f"{what} (context)",
        f"p50 {ms(p50)} ms, p95 {ms(p95)} ms, p99 {ms(p99)} ms (max {ms(r['max'])}), "
        f"{r['rsyncs']:.0f} rsync/remote, CPU {r['cpu']:.2f} s", reference, ratio,
        "p50 ≤ 1.5x, p99 ≤ 3x one call",
        p50 <= 1.5 * one and p99 <= 3 * one if judged else None)


def run(args) -> list[Row]:
    """The judged run with --remotes, then one remote alone: the second shows sersyncpy's own
    overhead without 3 rsync pairs sharing the CPUs."""
    rows = []
    chart = ChartData(f"trickle of {args.files} x {args.size} B, one every "
                      f"{args.interval * 1000:g} ms")
    with scratch("sersyncpy-b3-") as tmp:
        for remotes in dict.fromkeys([args.remotes, 1]):
            setup = argparse.Namespace(**{**vars(args), "remotes": remotes})
            r = measure(Path(tmp) / str(remotes), setup)
            rows.append(row(args, remotes, r))
            chart.latency[f"sersyncpy, {remotes} remote{'s' if remotes > 1 else ''}"] = (
                r["samples"]["latency"])
            if remotes == args.remotes:  # the references of the judged run
                chart.latency["one rsync call"] = r["samples"]["single"]
                if remotes > 1:
                    chart.latency[f"{remotes} rsync calls in parallel"] = (
                        r["samples"]["parallel"])
    return Rows(rows, chart)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.025)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--remotes", type=int, default=3)
    p.add_argument("--calls", type=int, default=30, help="reference rsync calls")
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
