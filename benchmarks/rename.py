"""B4 rename: a replicated directory of 5,000 files of 4 KiB (random content) is renamed into
another existing directory, with 3 local rsync daemons. What the daemons received for the
rename (their log's "received Y bytes" summed over every connection), against the size of the
directory. Reference in the same run, on a second identical setup: what one plain
`rsync -a --delete` per replica receives for the same rename.

    .venv/bin/python benchmarks/rename.py [--files 5000] [--size 4096] [--remotes 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

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

OLD, NEW = "projects/big", "archive/moved"


def make_tree(src: Path, data: bytes, files: int, size: int) -> None:
    """The directory to rename, inside an existing parent, and the parent it moves into."""
    (src / OLD).mkdir(parents=True)
    (src / NEW).parent.mkdir()
    (src / "projects" / "README").write_bytes(data[:size])
    (src / "archive" / "README").write_bytes(data[size:2 * size])
    for i in range(files):
        (src / OLD / f"f{i:05}").write_bytes(data[i * size:(i + 1) * size])


def measure(work: Path, tool: str, data: bytes, args) -> dict:
    src = work / "src"
    src.mkdir(parents=True)
    make_tree(src, data, args.files, args.size)
    with daemons(work, args.remotes) as ds:
        reference_rsync(src, ds)  # replicated before the rename, by plain rsync
        assert all(identical(src, r) for r in replicas(ds)), "the first copy differs"
        proc = Sersyncpy(work, src, ds).start() if tool == "sersyncpy" else None
        offsets = log_offsets(ds)
        started = time.monotonic()
        os.rename(src / OLD, src / NEW)
        if proc is None:
            lag = reference_rsync(src, ds)[0]
        else:
            lag = wait_matching(src, replicas(ds)) - started
            proc.stop()  # drains the queue: every rsync it would run is counted
        seen = traffic(ds, offsets)
        assert all(identical(src, r) for r in replicas(ds)), f"{tool}: a replica differs"
    return {"lag": lag, "received": max(t.received for t in seen),
            "transferred": max(t.transferred for t in seen),
            "connections": max(t.connections for t in seen)}


def run(args) -> list[Row]:
    data = os.urandom(args.files * args.size)
    with scratch("sersyncpy-b4-") as tmp:
        ours = measure(Path(tmp) / "0", "sersyncpy", data, args)
        ref = measure(Path(tmp) / "1", "rsync", data, args)
    size = args.files * args.size
    pct = 100 * ours["received"] / size

    def told(r: dict) -> str:
        return (f"{r['received']:,} B received/remote ({100 * r['received'] / size:.2f} %), "
                f"{r['transferred']:,} B in transfer lines (%b), daemon connections/remote: "
                f"{r['connections']}, lag {r['lag']:.2f} s")

    return [Row(
        "B4", f"rename of a directory of {args.files} x {args.size} B "
        f"({size / 2**20:.1f} MiB), {args.remotes} remotes: sersyncpy",
        told(ours), f"rsync -a --delete: {told(ref)}",
        f"{pct:.2f} % of the directory; {ours['received'] / ref['received']:.4f}x rsync",
        "< 1 % of the directory", pct < 1)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--remotes", type=int, default=3)
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
