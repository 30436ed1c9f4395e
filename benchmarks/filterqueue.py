"""B1 filter queue: 1 M events on 50 k paths fed to the compiled queue and to its pure-Python twin
in the same run, in lists of 100 to 1,000 events per push_many() (one watcher read each) with a
take() every ~5,000 events, as a lane under load. Events per second of each, and their ratio.

    .venv/bin/python benchmarks/filterqueue.py [--events 1000000] [--paths 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from harness import Row

from sersyncpy import _filterqueue as compiled
from sersyncpy import _filterqueue_py as twin
from sersyncpy.events import DELETE, RENAME, SUBTREE, UPDATE, Event


def tree(rng: random.Random, paths: int) -> tuple[list[tuple], list[tuple]]:
    """(files, directories) as (parent, name): files 2 to 4 deep, like d12/f7, d12/s3/f456,
    d12/s3/t1/f89."""
    tops = [f"d{i}" for i in range(50)]
    subs = [f"{t}/s{i}" for t in tops for i in range(10)]
    leaves = [f"{s}/t{i}" for s in subs for i in range(4)]
    files = []
    for i in range(paths):
        parent = rng.choices((tops, subs, leaves), weights=(1, 5, 4))[0]
        files.append((rng.choice(parent), f"f{i}"))
    return files, [tuple(d.rsplit("/", 1)) for d in subs + leaves]


def _path(parent_name: tuple) -> str:
    return "/".join(parent_name)  # a new str each time, as the watcher's os.path.join


def workload(seed: int, count: int, paths: int) -> list[list[Event]]:
    """`count` events in watcher reads of 100 to 1,000 events. Every path is a new str, as the
    watcher builds one per event; most events write a few hot files again and again."""
    rng = random.Random(seed)
    files, dirs = tree(rng, paths)
    hot = rng.sample(files, len(files) // 20)
    out: list[Event] = []
    new = 0
    while len(out) < count:
        r = rng.random() * 100
        if r < 60:  # a write of a hot file (logs, databases)
            out.append(Event(UPDATE, _path(rng.choice(hot)), False))
        elif r < 87:  # a write or a create of any file
            out.append(Event(UPDATE, _path(rng.choice(files)), False))
        elif r < 94:  # a file deleted
            out.append(Event(DELETE, _path(rng.choice(files)), False))
        elif r < 97:  # a directory's own metadata (chmod, touch)
            out.append(Event(UPDATE, _path(rng.choice(dirs)), True))
        elif r < 99:  # a new directory, then files written into it
            new += 1
            parent = _path(rng.choice(dirs[:len(dirs) // 5]))  # d12/s3: files 4 deep
            out.append(Event(SUBTREE, f"{parent}/n{new}", True))
            out.extend(Event(UPDATE, f"{parent}/n{new}/f{i}", False)
                       for i in range(rng.randrange(10)))
        elif r < 99.6:  # a directory deleted (its content's events came first)
            out.append(Event(DELETE, _path(rng.choice(dirs)), True))
        else:  # a directory renamed
            new += 1
            parent, name = rng.choice(dirs)
            out.append(Event(RENAME, f"{parent}/r{new}", True, f"{parent}/{name}"))
    del out[count:]
    reads, start = [], 0
    while start < count:
        size = rng.randint(100, 1000)
        reads.append(out[start:start + size])
        start += size
    return reads


def feed(queue_class, reads: list[list[Event]], take_every: int) -> tuple[float, int]:
    """Seconds to push every read and take a batch every `take_every` events; events taken.
    The batches are dropped at once, as a lane does once rsync has them."""
    sent = since = 0
    gc.collect()
    started = time.perf_counter()
    q = queue_class()
    push_many, take = q.push_many, q.take
    for read in reads:
        push_many(read)
        since += len(read)
        if since >= take_every:
            sent += len(take())
            since = 0
    sent += len(take())
    return time.perf_counter() - started, sent


def same_batches(reads: list[list[Event]], take_every: int) -> bool:
    """Whether both queues give the same batches, checked untimed."""
    a, b = compiled.FilterQueue(), twin.FilterQueue()
    since = 0
    for read in reads:
        a.push_many(read)
        b.push_many(read)
        since += len(read)
        if since >= take_every:
            if a.take() != b.take():
                return False
            since = 0
    return a.take() == b.take()


def run(args) -> list[Row]:
    reads = workload(args.seed, args.events, args.paths)
    if not same_batches(reads, args.take_every):
        raise SystemExit("the compiled queue and its twin gave different batches")
    best = {compiled: float("inf"), twin: float("inf")}
    for _ in range(args.repeat):
        for impl in best:
            seconds, sent = feed(impl.FilterQueue, reads, args.take_every)
            best[impl] = min(best[impl], seconds)
    rate_c, rate_p = args.events / best[compiled], args.events / best[twin]
    ratio = rate_c / rate_p
    return [Row(
        "B1", f"filter queue, {args.events:,} events on {args.paths:,} paths in "
              f"{len(reads):,} reads -> {sent:,} taken, best of {args.repeat}",
        f"compiled {rate_c / 1e6:.2f} M events/s", f"Python twin {rate_p / 1e6:.2f} M events/s",
        f"{ratio:.1f}x", "≥ 2 M events/s and ≥ 5x the twin",
        rate_c >= 2e6 and ratio >= 5)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--paths", type=int, default=50_000)
    p.add_argument("--take-every", type=int, default=5_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
