"""B5 delete: a replicated tree of 10,000 files in 100 directories is removed with
shutil.rmtree from the watch root (other content stays), with 3 local rsync daemons. Lag from
the end of the rmtree until every replica matches, and rsync processes per remote. sersyncpy
runs with its default deletion hold (judged) and with SERSYNCPY_DELETE_HOLD_SECONDS=0 (the
cost of the hold). Reference in the same run, on an identical setup: one `rsync -a --delete`
per replica started when the rmtree ends.

    .venv/bin/python benchmarks/delete.py [--files 10000] [--dirs 100] [--keep 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from harness import (
    ChartData,
    Row,
    Rows,
    Sersyncpy,
    daemons,
    file_sizes,
    identical,
    log_offsets,
    reference_rsync,
    replicas,
    scratch,
    traffic,
    wait_matching,
)

DOOMED = "doomed"


def make_tree(src: Path, args) -> None:
    """`doomed`, the tree to delete, and `keep`, what stays (a tenth of it in files)."""
    data = os.urandom(args.size + 64)
    for top, files, dirs in ((DOOMED, args.files, args.dirs),
                             ("keep", args.keep, max(1, args.dirs // 10))):
        for d in range(dirs):
            (src / top / f"d{d:03}").mkdir(parents=True)
            for f in range(files // dirs):
                (src / top / f"d{d:03}" / f"f{f:04}").write_bytes(data[f % 64:f % 64 + args.size])


def wait_deleted(src: Path, targets: list[Path], timeout: float = 300) -> float:
    """When `doomed` is gone from every target (rsync removes the directory after its
    content); an os.stat per poll, where walking 10,000 files would compete with rsync for
    the CPUs. The targets are then checked against the source, and waited for if needed."""
    deadline = time.monotonic() + timeout
    while any((t / DOOMED).exists() for t in targets):
        if time.monotonic() > deadline:
            raise SystemExit(f"{DOOMED} still on a replica after {timeout}s")
        time.sleep(0.005)
    done = time.monotonic()
    want = file_sizes(src)
    if all(file_sizes(t) == want for t in targets):
        return done
    return wait_matching(src, targets, timeout)


def measure(work: Path, args, hold: Optional[str]) -> dict:
    """One setup: sersyncpy with SERSYNCPY_DELETE_HOLD_SECONDS=hold (None: its default), or,
    with hold "rsync", the reference."""
    src = work / "src"
    src.mkdir(parents=True)
    make_tree(src, args)
    with daemons(work, args.remotes) as ds:
        reference_rsync(src, ds)  # replicated before the deletion, by plain rsync
        assert all(identical(src, r) for r in replicas(ds)), "the first copy differs"
        proc = None
        if hold != "rsync":
            env = {} if hold is None else {"SERSYNCPY_DELETE_HOLD_SECONDS": hold}
            proc = Sersyncpy(work, src, ds, env).start()
        offsets = log_offsets(ds)
        started = time.monotonic()
        shutil.rmtree(src / DOOMED)
        rm_end = time.monotonic()
        if proc is None:
            lag, cpu = reference_rsync(src, ds)
            runs = args.remotes
        else:
            lag = wait_deleted(src, replicas(ds)) - rm_end
            cpu = proc.stop()  # drains the queue: every rsync it would run is counted
            runs = proc.rsync_runs()
        seen = traffic(ds, offsets)
        assert all(identical(src, r) for r in replicas(ds)), f"{hold}: a replica differs"
    return {"lag": lag, "rm": rm_end - started, "cpu": cpu, "runs": runs / args.remotes,
            "connections": max(t.connections for t in seen)}


def run(args) -> list[Row]:
    setups = {"default hold": None, "hold 0": "0", "rsync": "rsync"}
    with scratch("sersyncpy-b5-") as tmp:
        results = {name: measure(Path(tmp) / str(i), args, hold)
                   for i, (name, hold) in enumerate(setups.items())}
    chart = ChartData(f"rmtree of {args.files:,} files", lag_label="lag after the rmtree (s)",
                      cost={("plain rsync" if name == "rsync" else f"sersyncpy, {name}"):
                            [[r["lag"], r["cpu"]]] for name, r in results.items()})
    ref = results.pop("rsync")
    rows = []
    for name, r in results.items():
        ratio = r["lag"] / ref["lag"]
        rows.append(Row(
            "B5", f"rmtree of {args.files} files in {args.dirs} dirs ({args.keep} stay), "
            f"{args.remotes} remotes: sersyncpy, {name}",
            f"lag {r['lag']:.2f} s (rmtree took {r['rm']:.2f} s), {r['runs']:.1f} rsync/remote "
            f"({r['connections']} daemon connections), CPU {r['cpu']:.2f} s",
            f"rsync -a --delete: lag {ref['lag']:.2f} s (rmtree took {ref['rm']:.2f} s), "
            f"CPU {ref['cpu']:.2f} s",
            f"lag {ratio:.2f}x", "lag ≤ 2x, ≤ 3 rsync/remote",
            ratio <= 2 and r["runs"] <= 3 if name == "default hold" else None))
    return Rows(rows, chart)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10000)
    p.add_argument("--dirs", type=int, default=100)
    p.add_argument("--keep", type=int, default=1000, help="files that stay")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--remotes", type=int, default=3)
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
