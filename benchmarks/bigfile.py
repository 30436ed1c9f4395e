"""B10 big file, with 3 local rsync daemons: one 256 MiB file of random bytes written in 1 MiB
writes, then (once every replica holds it) 1 MiB appended. For each step, the time from the
file's close() until every replica holds it at its full size (polled every 10 ms; rsync
renames its temporary file into place), and in all; the bytes are compared afterwards.
sersyncpy runs with sersync's commonParams "-artu" and with "-a"; the reference, in the same
run on fresh daemons, is plain rsync with the same options run for the write and again for
the append (one call per replica, in parallel, started at the close()). Each setup runs
--runs times, alternating with its reference; the median [min-max] is shown, the medians
judged.

    .venv/bin/python benchmarks/bigfile.py [--mib 256] [--append-mib 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

from harness import (
    ChartData,
    ConfiguredSersyncpy,
    Row,
    Rows,
    daemons,
    differs_note,
    reference_rsync_with,
    replicas,
    scratch,
    stop_checked,
    stopped_on_failure,
    tree_diff,
)

NAME = "big.bin"
MIB = 1 << 20


def write(path: Path, data: memoryview, mode: str) -> float:
    """`data` in 1 MiB writes; returns the time of the close()."""
    with open(path, mode) as f:
        for off in range(0, len(data), MIB):
            f.write(data[off:off + MIB])
    return time.monotonic()


def wait_size(targets: list[Path], size: int, timeout: float) -> float:
    """When every target's big file has `size` bytes (None after `timeout`)."""
    deadline = time.monotonic() + timeout
    pending = list(targets)
    while pending:
        still = []
        for t in pending:
            try:
                if os.stat(t / NAME).st_size != size:
                    still.append(t)
            except FileNotFoundError:
                still.append(t)
        pending = still
        if not pending:
            break
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    return time.monotonic()


def measure(work: Path, tool: str, params: str, data: bytes, args) -> dict:
    src = work / "src"
    src.mkdir(parents=True)
    view = memoryview(data)
    body, tail = view[:args.mib * MIB], view[args.mib * MIB:]
    options = (*params.split(), "--delete")
    result = {}
    with daemons(work, args.remotes) as ds:
        targets = replicas(ds)
        if tool == "rsync":
            write(src / NAME, body, "wb")
            result["write"], result["cpu"] = reference_rsync_with(src, ds, options)
            write(src / NAME, tail, "ab")
            result["append"], cpu = reference_rsync_with(src, ds, options)
            result["cpu"] += cpu
            result["rsyncs"] = 2 * args.remotes
        else:
            proc = ConfiguredSersyncpy(work, src, ds, common_params=params)
            with stopped_on_failure(proc.start()):
                for step, part, mode in (("write", body, "wb"), ("append", tail, "ab")):
                    size = (src / NAME).stat().st_size + len(part) if mode == "ab" else len(part)
                    closed = write(src / NAME, part, mode)
                    done = wait_size(targets, size, args.patience)
                    result[step] = None if done is None else done - closed
                    if done is None:
                        break
                result["cpu"] = stop_checked(proc)
            result["rsyncs"] = proc.rsync_runs()
        result["diffs"] = [tree_diff(src, t) for t in targets]
    return result


def span(values: list) -> str:
    if any(v is None for v in values):
        return "**never**"
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}] s"


def show(runs: list[dict]) -> str:
    text = ", ".join(f"{step} {span([r.get(step) for r in runs])}"
                     for step in ("write", "append"))
    text += f", in all {span([total_of(r) for r in runs])}"
    cpu = statistics.median(r["cpu"] for r in runs)
    rsyncs = statistics.median(r["rsyncs"] for r in runs)
    bad = next((r["diffs"] for r in runs if any(r["diffs"])), [])
    return f"{text}; CPU {cpu:.2f} s, {rsyncs:.0f} rsync processes" + differs_note(bad)


def total_of(r: dict):
    if r.get("write") is None or r.get("append") is None:
        return None
    return r["write"] + r["append"]


def run(args) -> list[Row]:
    data = os.urandom((args.mib + args.append_mib) * MIB)
    rows = []
    chart = ChartData(f"big file, {args.mib} MiB + {args.append_mib} MiB",
                      lag_label="write + append, each from its close() (s)")
    with scratch("sersyncpy-b10-") as tmp:
        for i, params in enumerate(args.params.split(",")):
            results = {"sersyncpy": [], "rsync": []}
            for n in range(args.runs):
                for tool in results:
                    work = Path(tmp) / f"{i}{tool}{n}"
                    results[tool].append(measure(work, tool, params, data, args))
                    shutil.rmtree(work)  # 1 GiB of tmpfs per setup
            s, ref = results["sersyncpy"], results["rsync"]
            for name, runs in ((f"sersyncpy {params}", s), (f"plain rsync {params}", ref)):
                chart.cost[name] = [[total_of(r), r["cpu"]] for r in runs]
            totals, ref_totals = [total_of(r) for r in s], [total_of(r) for r in ref]
            done = None not in totals
            total = statistics.median(totals) if done else None
            ref_total = statistics.median(ref_totals)
            equal = not any(any(r["diffs"]) for r in s)
            rows.append(Row(
                "B10", f"big file: {args.mib} MiB written, then {args.append_mib} MiB "
                f"appended, {args.remotes} remotes: sersyncpy with {params}; median "
                f"[min–max] of {args.runs}",
                show(s), f"rsync {params} --delete per step: {show(ref)}",
                f"{total / ref_total:.2f}x (medians)" if done else "n/a",
                "≤ 1.2x plain rsync's time", done and equal and total <= 1.2 * ref_total))
    return Rows(rows, chart)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--append-mib", type=int, default=1)
    p.add_argument("--remotes", type=int, default=3)
    p.add_argument("--params", default="-artu,-a",
                   help="commonParams to compare, comma-separated")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--patience", type=float, default=120)
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
