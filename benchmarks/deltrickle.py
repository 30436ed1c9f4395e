"""B11 delete trickle: 200 files of 1 KiB, present and replicated on 3 local rsync daemons
(by plain rsync, before sersyncpy starts), are deleted one every 25 ms. Per-deletion
latency from the unlink() until the name is gone from every replica, seen by an inotify
watcher on the replicas (IN_DELETE): p50, p95, p99 of the slowest replica; CPU, rsync
processes, and the final replicas compared with the source. References in the same run, on
daemons of their own: one rsync call deleting one file on one daemon
(`rsync -a --delete-missing-args ./NAME`, sersyncpy's connection options), and the same call
to 3 daemons in parallel; medians, half measured before the trickle and half after (as B3
does for creations).

    .venv/bin/python benchmarks/deltrickle.py [--files 200] [--interval 0.025] [--remotes 3]
"""

from __future__ import annotations

import argparse
import os
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
    differs_note,
    nearest_rank,
    reference_rsync,
    replicas,
    scratch,
    stop_checked,
    stopped_on_failure,
    wait_equal,
)
from inotify_simple import INotify
from inotify_simple import flags as F


class DeletionWatcher(threading.Thread):
    """Records when each name is first deleted (or moved away) in each replica directory."""

    def __init__(self, dirs: list[Path]):
        super().__init__(name="deletion watcher", daemon=True)
        self.inotify = INotify()
        self.wds = {self.inotify.add_watch(d, F.DELETE | F.MOVED_FROM): i
                    for i, d in enumerate(dirs)}
        self.gone: list[dict[str, float]] = [{} for _ in dirs]
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for ev in self.inotify.read(timeout=100):
                now = time.monotonic()
                i = self.wds.get(ev.wd)
                if i is not None:
                    self.gone[i].setdefault(ev.name, now)

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.inotify.close()


def one_call(d, src: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["rsync", "-a", "--delete-missing-args", "--sockopts=TCP_NODELAY", f"--port={d.port}",
         f"--password-file={d.password_file}", f"./{name}", f"{d.user}@127.0.0.1::backup/"],
        cwd=src)


def reference_calls(ds, src: Path, calls: int, size: int, tag: str) -> tuple[list, list]:
    """`calls` single-deletion rsync calls to ds[0], then `calls` to all of ds in parallel;
    each deletes a 1 KiB file that every replica holds. Returns both lists of seconds."""
    single, parallel = [], []
    for targets, out, kind in ((ds[:1], single, "s"), (ds, parallel, "p")):
        for i in range(calls):
            name = f"{tag}{kind}{i:03}"
            data = os.urandom(size)
            for d in targets:
                (d.modules["backup"] / name).write_bytes(data)
            started = time.monotonic()
            for p in [one_call(d, src, name) for d in targets]:
                p.wait()
            out.append(time.monotonic() - started)
            assert not any((d.modules["backup"] / name).exists() for d in targets), name
    return single, parallel


def measure(work: Path, args) -> dict:
    src, ref_src = work / "src", work / "refsrc"
    src.mkdir(parents=True)
    ref_src.mkdir()
    data = os.urandom(args.size + 64)
    names = [f"f{i:04}" for i in range(args.files)]
    for i, name in enumerate(names):
        (src / name).write_bytes(data[i % 64:i % 64 + args.size])
    half = args.calls // 2
    with daemons(work / "ref", args.remotes) as ref_ds, daemons(work, args.remotes) as ds:
        single, parallel = reference_calls(ref_ds, ref_src, half, args.size, "a")
        reference_rsync(src, ds)  # replicated before sersyncpy starts
        watcher = DeletionWatcher(replicas(ds))
        watcher.start()
        try:
            proc = Sersyncpy(work, src, ds)
            with stopped_on_failure(proc.start()):
                unlinked = {}
                start = time.monotonic()
                for i, name in enumerate(names):
                    os.unlink(src / name)
                    unlinked[name] = time.monotonic()
                    time.sleep(max(0.0, start + (i + 1) * args.interval - time.monotonic()))
                done, diffs = wait_equal(src, replicas(ds), args.patience)
                cpu = stop_checked(proc)
        finally:
            watcher.stop()
        more_single, more_parallel = reference_calls(ref_ds, ref_src, args.calls - half,
                                                     args.size, "b")
    latency = [max(gone.get(name, float("inf")) for gone in watcher.gone) - t
               for name, t in unlinked.items()]
    return {"lat": latency, "cpu": cpu, "rsyncs": proc.rsync_runs(), "diffs": diffs,
            "equal": done is not None, "single": single + more_single,
            "parallel": parallel + more_parallel}


def ms(seconds: float) -> str:
    return "never" if seconds == float("inf") else f"{seconds * 1000:.1f} ms"


def run(args) -> list[Row]:
    with scratch("sersyncpy-b11-") as tmp:
        r = measure(Path(tmp), args)
    lat = r["lat"]
    p50, p95, p99 = (nearest_rank(lat, q) for q in (50, 95, 99))
    one, par = nearest_rank(r["single"], 50), nearest_rank(r["parallel"], 50)
    unseen = sum(1 for x in lat if x == float("inf"))
    measured = (f"p50 {ms(p50)}, p95 {ms(p95)}, p99 {ms(p99)} (max {ms(max(lat))}), "
                f"{r['rsyncs'] / args.remotes:.1f} rsync/remote, CPU {r['cpu']:.2f} s")
    if unseen:
        measured += f", **{unseen} deletions never seen on every replica**"
    if not r["equal"]:
        measured += ", final replicas **not equal**" + differs_note(r["diffs"])
    chart = ChartData(f"delete trickle of {args.files}, one every {args.interval * 1000:g} ms",
                      latency={"sersyncpy": lat, "one rsync call": r["single"],
                               f"{args.remotes} rsync calls in parallel": r["parallel"]})
    return Rows([Row(
        "B11", f"delete trickle: {args.files} x {args.size} B deleted every "
        f"{args.interval * 1000:g} ms, {args.remotes} remotes: sersyncpy", measured,
        f"one rsync call deleting one file: p50 {ms(one)}; to {args.remotes} in parallel: "
        f"p50 {ms(par)}",
        f"p50 {p50 / one:.2f}x one call, {p50 / par:.2f}x the parallel calls",
        "p50 ≤ 50 ms", p50 <= 0.05 and r["equal"] and not unseen)], chart)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.025)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--remotes", type=int, default=3)
    p.add_argument("--calls", type=int, default=30, help="reference rsync calls")
    p.add_argument("--patience", type=float, default=30)
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
