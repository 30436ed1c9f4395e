"""B8 sustained churn: a seeded random writer does ~100 operations/s for 30 s of mixed kinds
(create, same-size rewrite, append, delete, rename of a file, mkdir, rm -rf of a small
directory, mv of a small directory) in a tree of 1,000 files in 40 directories at the start,
with 3 local rsync daemons.

Per-change latency: each operation's expected outcome (bytes equal; path absent; renamed:
new present and old absent; a moved directory's whole content at its new place) is polled
on every replica every ~5 ms, and a change has arrived at the first poll that finds it on
all of them at once. A later operation on the same path (or on a directory above it, or a
move of it) takes over the earlier one's wait: seeing the newer state proves the older one
passed. Where the newer state is an absence and the older a presence not yet seen on every
replica (created, then deleted before it arrived), absence proves nothing, and those
operations are counted as undone, not timed. p50/p99 over the timed operations (one never
seen counts as infinite), CPU seconds of the tool and its rsync children from the end of its
start-up sync, rsync processes, and the final replicas compared with the source (types,
modes, bytes, symlinks, empty directories).

The same writer and seed against sersyncpy, against lsyncd (default.rsync, delay 1) when
installed, and the limit: on 3 more daemons that hold the start state, one
`rsync -a --delete` per replica run once after the writer stopped (in sersyncpy's run, once
sersyncpy has stopped): its time and CPU.

    .venv/bin/python benchmarks/churn.py [--seconds 30] [--rate 100] [--seed 15]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from harness import (
    ChartData,
    Lsyncd,
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
    tree_diff,
    wait_equal,
)

ABSENT = "absent"  # expectations: bytes (a file's content), DIR, ABSENT
DIR = "dir"
KINDS = (("create", 28), ("modify", 18), ("append", 14), ("delete", 12), ("rename", 12),
         ("mkdir", 6), ("rmtree", 4), ("mvdir", 6))
MAX_DEPTH = 4  # directories nest at most this deep
SMALL_DIR = 30  # rm -rf and mv take directories with at most this many entries beneath


class Churn:
    """A seeded random writer over `root`, with a model of what the tree holds. Each
    operation returns its expectations: [(relative path, bytes | DIR | ABSENT)]. The
    sequence depends on the seed alone, never on timing, so every tool sees the same one.
    A moved path's expectation names where it came from: (new path, want, old path)."""

    def __init__(self, root: Path, seed: int):
        self.root = root
        self.rng = random.Random(seed)
        self.files: dict[str, bytes] = {}
        self.dirs: dict[str, None] = {"": None}  # ordered sets; "" is the root
        self.counter = 0
        self.kinds = [k for k, _ in KINDS]
        self.weights = [w for _, w in KINDS]
        self.done: dict[str, int] = {k: 0 for k in self.kinds}

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:05}"

    def content(self) -> bytes:
        size = self.rng.choice((self.rng.randint(1, 2048), self.rng.randint(2048, 32768)))
        return self.rng.randbytes(size)

    @staticmethod
    def join(parent: str, name: str) -> str:
        return f"{parent}/{name}" if parent else name

    @staticmethod
    def depth(path: str) -> int:
        return path.count("/") + 1 if path else 0

    def under(self, path: str) -> tuple[list[str], list[str]]:
        prefix = path + "/"
        return ([f for f in self.files if f.startswith(prefix)],
                [d for d in self.dirs if d.startswith(prefix)])

    def populate(self, dirs: int = 40, files: int = 25) -> None:
        """The start state: `dirs` directories of `files` files (a quarter of them nested)."""
        for i in range(dirs):
            parents = [d for d in self.dirs if self.depth(d) < MAX_DEPTH - 1]
            parent = self.rng.choice(parents) if i % 4 == 3 else ""
            d = self.join(parent, self.fresh("d"))
            os.mkdir(self.root / d)
            self.dirs[d] = None
            for _ in range(files):
                self._create(d)

    def _create(self, parent: Optional[str] = None) -> list:
        if parent is None:
            parent = self.rng.choice(list(self.dirs))
        path = self.join(parent, self.fresh("f"))
        data = self.content()
        with open(self.root / path, "wb") as f:
            f.write(data)
        self.files[path] = data
        return [(path, data)]

    def step(self) -> tuple[str, list]:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        if kind in ("modify", "append", "delete", "rename") and not self.files:
            kind = "create"
        if kind in ("rmtree", "mvdir") and len(self.dirs) < 3:
            kind = "mkdir"
        checks = getattr(self, "_" + kind)()
        if checks is None:  # nothing fitted (no small directory, no room to move one)
            kind, checks = "create", self._create()
        self.done[kind] += 1
        return kind, checks

    def _modify(self) -> list:
        path = self.rng.choice(list(self.files))
        data = self.rng.randbytes(len(self.files[path]))
        with open(self.root / path, "r+b") as f:  # rewritten in place, same size
            f.write(data)
        self.files[path] = data
        return [(path, data)]

    def _append(self) -> list:
        path = self.rng.choice(list(self.files))
        extra = self.rng.randbytes(self.rng.randint(16, 4096))
        with open(self.root / path, "ab") as f:
            f.write(extra)
        self.files[path] += extra
        return [(path, self.files[path])]

    def _delete(self) -> list:
        path = self.rng.choice(list(self.files))
        os.unlink(self.root / path)
        del self.files[path]
        return [(path, ABSENT)]

    def _rename(self) -> list:
        old = self.rng.choice(list(self.files))
        new = self.join(self.rng.choice(list(self.dirs)), self.fresh("f"))
        os.rename(self.root / old, self.root / new)
        self.files[new] = self.files.pop(old)
        return [(new, self.files[new], old), (old, ABSENT)]

    def _mkdir(self) -> list:
        parents = [d for d in self.dirs if self.depth(d) < MAX_DEPTH - 1]
        path = self.join(self.rng.choice(parents), self.fresh("d"))
        os.mkdir(self.root / path)
        self.dirs[path] = None
        return [(path, DIR)]

    def _rmtree(self) -> Optional[list]:
        small = [d for d in self.dirs if d and sum(len(x) for x in self.under(d)) <= SMALL_DIR]
        if not small:
            return None
        path = self.rng.choice(small)
        shutil.rmtree(self.root / path)
        files, dirs = self.under(path)
        for f in files:
            del self.files[f]
        for d in dirs + [path]:
            del self.dirs[d]
        return [(path, ABSENT)]

    def _mvdir(self) -> Optional[list]:
        small = [d for d in self.dirs if d and sum(len(x) for x in self.under(d)) <= SMALL_DIR]
        if not small:
            return None
        path = self.rng.choice(small)
        files, dirs = self.under(path)
        height = max([self.depth(d) for d in dirs] + [self.depth(path)]) - self.depth(path)
        parents = [d for d in self.dirs if d != path and not d.startswith(path + "/")
                   and self.depth(d) + 1 + height <= MAX_DEPTH]
        if not parents:
            return None
        new = self.join(self.rng.choice(parents), self.fresh("d"))
        os.rename(self.root / path, self.root / new)
        checks = [(new, DIR, path)]
        for d in [path] + dirs:
            del self.dirs[d]
        self.dirs[new] = None
        for d in dirs:
            moved = new + d[len(path):]
            self.dirs[moved] = None
            checks.append((moved, DIR, d))
        for f in files:
            moved = new + f[len(path):]
            self.files[moved] = self.files.pop(f)
            checks.append((moved, self.files[moved], f))
        checks.append((path, ABSENT))
        return checks


class Writer(threading.Thread):
    """Runs a Churn at `rate` operations/s (each at start + i/rate) until stop() or
    `seconds`; calls on_op(time done, kind, expectations) after each."""

    def __init__(self, churn: Churn, rate: float, seconds: float,
                 on_op: Optional[Callable] = None):
        super().__init__(name="churn writer", daemon=True)
        self.churn, self.rate, self.seconds, self.on_op = churn, rate, seconds, on_op
        self.ops = 0
        self.started = self.ended = 0.0
        self.error: Optional[BaseException] = None
        self._stop_now = threading.Event()

    def run(self) -> None:
        try:
            self.started = time.monotonic()
            while not self._stop_now.is_set():
                due = self.started + self.ops / self.rate
                if due - self.started >= self.seconds:
                    break
                delay = due - time.monotonic()
                if delay > 0 and self._stop_now.wait(delay):
                    break
                kind, checks = self.churn.step()
                done = time.monotonic()
                self.ops += 1
                if self.on_op:
                    self.on_op(done, kind, checks)
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            self.ended = time.monotonic()

    def halt(self) -> None:
        """Stop now and wait, raising nothing (for clean-up)."""
        self._stop_now.set()
        self.join()

    def finish(self, now: bool = False) -> float:
        """Wait for the end (at once with `now`); returns when the last operation ended."""
        if now:
            self._stop_now.set()
        self.join()
        if self.error:
            raise self.error
        return self.ended


class Expectation:
    """A path's awaited state; `present`: the path itself had been seen on every replica
    (only its content is awaited)."""

    __slots__ = ("want", "waiters", "present")

    def __init__(self, want, waiters: list[int], present: bool):
        self.want, self.waiters, self.present = want, waiters, present


class ChangeChecker(threading.Thread):
    """Polls the pending expectations on every replica every `interval` seconds. An
    operation has arrived when all its expectations (or those that took them over) held on
    every replica in one poll; its latency runs from its end to that poll.

    A later operation on a path (or on a directory above it) takes over the wait of an
    earlier one: seeing the newer state proves the older one was passed. Except where the
    newer state is an absence and the older a presence that no poll had yet seen on every
    replica (a file deleted or moved away before it arrived): absence then proves nothing,
    since the path may never have reached a replica. Such parts are not timed; an
    operation all of whose parts were undone that way is counted as `undone`, not timed."""

    def __init__(self, targets: list[Path], interval: float = 0.005):
        super().__init__(name="change checker", daemon=True)
        self.targets, self.interval = targets, interval
        self.lock = threading.Lock()
        self.pending: dict[str, Expectation] = {}
        self.op_time: list[float] = []
        self.op_kind: list[str] = []
        self.outstanding: list[int] = []  # parts not yet seen or undone
        self.timed: list[int] = []  # parts seen
        self.last_seen: list[float] = []
        self._stop_now = threading.Event()

    def _settle(self, op: int, seen: Optional[float]) -> None:
        """One part of `op` was seen at `seen`, or undone (None)."""
        self.outstanding[op] -= 1
        if seen is not None:
            self.timed[op] += 1
            self.last_seen[op] = max(self.last_seen[op], seen)

    def record(self, done: float, kind: str, checks: list) -> None:
        with self.lock:
            op = len(self.op_time)
            self.op_time.append(done)
            self.op_kind.append(kind)
            self.outstanding.append(len(checks))
            self.timed.append(0)
            self.last_seen.append(0.0)
            moved_unseen = set()
            for path, want, *origin in checks:
                waiters = [op]
                # A modified or appended file was there before; if nothing was pending on
                # it, every replica had shown it.
                present = kind in ("modify", "append")
                unseen_here = False
                if origin:  # moved here: what was awaited at the old place is now awaited here
                    exp = self.pending.pop(origin[0], None)
                    if exp is not None:
                        waiters += exp.waiters
                        if not exp.present:
                            moved_unseen.add(origin[0])
                prefix = path + "/"
                taken = [(p, self.pending.pop(p)) for p in
                         [p for p in self.pending if p == path or p.startswith(prefix)]]
                for p, exp in taken:
                    if p == path:
                        present = present and exp.present
                    if want is ABSENT and exp.want is not ABSENT:
                        for w in exp.waiters:  # reversed before it was seen: not timed
                            self._settle(w, None)
                        unseen_here = unseen_here or (p == path and not exp.present)
                    else:
                        waiters += exp.waiters
                if want is ABSENT and path in moved_unseen:
                    unseen_here = True  # moved away before it was seen
                if unseen_here:
                    # `path` itself had not been seen: its absence would prove nothing.
                    for w in waiters:
                        self._settle(w, None)
                else:
                    self.pending[path] = Expectation(want, waiters, present)

    def holds(self, path: str, want) -> bool:
        for t in self.targets:
            full = t / path
            try:
                if want is ABSENT:
                    os.lstat(full)
                    return False
                if want is DIR:
                    if not full.is_dir() or full.is_symlink():
                        return False
                    continue
                if os.lstat(full).st_size != len(want):
                    return False
                with open(full, "rb") as f:
                    if f.read() != want:
                        return False
            except (FileNotFoundError, NotADirectoryError):
                if want is not ABSENT:
                    return False
        return True

    def run(self) -> None:
        while not self._stop_now.is_set():
            with self.lock:
                snapshot = list(self.pending.items())
            met = []
            for path, exp in snapshot:
                if self.holds(path, exp.want):
                    met.append((path, exp, time.monotonic()))
            if met:
                with self.lock:
                    for path, exp, seen in met:
                        if self.pending.get(path) is not exp:
                            continue  # taken over meanwhile
                        del self.pending[path]
                        for op in exp.waiters:
                            self._settle(op, seen)
            self._stop_now.wait(self.interval)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        self._stop_now.set()
        self.join()

    def latencies(self) -> tuple[list[float], int]:
        """Each timed operation's latency (inf: never seen on every replica), and how many
        were undone before they could be seen."""
        with self.lock:
            lat, undone = [], 0
            for op, done in enumerate(self.op_time):
                if self.outstanding[op] > 0:
                    lat.append(float("inf"))
                elif self.timed[op]:
                    lat.append(self.last_seen[op] - done)
                else:
                    undone += 1
            return lat, undone


def measure(work: Path, tool: str, args) -> dict:
    src = work / "src"
    src.mkdir(parents=True)
    churn = Churn(src, args.seed)
    churn.populate()
    with daemons(work, args.remotes) as ds, daemons(work / "ref", args.remotes) as ref_ds:
        if tool == "sersyncpy":
            reference_rsync(src, ref_ds)  # the limit's replicas hold the start state
            proc = Sersyncpy(work, src, ds)
        else:
            proc = Lsyncd(work, src, ds, 1)
        with stopped_on_failure(proc.start()):
            checker = ChangeChecker(replicas(ds), args.poll)
            checker.start()
            writer = Writer(churn, args.rate, args.seconds, checker.record)
            writer.start()
            try:
                writer_end = writer.finish()
                idle = checker.wait_idle(args.patience)
            finally:
                writer.halt()  # at once, if the block failed
                checker.stop()
            done, diffs = wait_equal(src, replicas(ds), 5 if not idle else args.patience)
            cpu = stop_checked(proc)
        lat, undone = checker.latencies()
        result = {"lat": lat, "undone": undone, "cpu": cpu, "rsyncs": proc.rsync_runs(),
                  "ops": writer.ops, "kinds": dict(churn.done),
                  "elapsed": writer_end - writer.started, "diffs": diffs,
                  "lag": None if done is None else max(0.0, done - writer_end)}
        if tool == "sersyncpy":
            result["ref"] = reference_rsync(src, ref_ds)
            result["ref_diffs"] = [tree_diff(src, r) for r in replicas(ref_ds)]
    return result


def ms(seconds: float) -> str:
    return "never" if seconds == float("inf") else f"{seconds * 1000:.0f} ms"


def summary(r: dict) -> str:
    lat = r["lat"]
    unseen = sum(1 for x in lat if x == float("inf"))
    text = (f"p50 {ms(nearest_rank(lat, 50))}, p99 {ms(nearest_rank(lat, 99))} "
            f"(max {ms(max(lat))}), CPU {r['cpu']:.2f} s, {r['rsyncs']} rsync processes")
    if unseen:
        text += f", **{unseen} changes never seen on every replica**"
    if r["undone"]:
        text += f" ({r['undone']} more undone before they could be seen: not timed)"
    text += (", final replicas equal" if r["lag"] is not None
             else ", final replicas **not equal**") + differs_note(r["diffs"])
    return text


def run(args) -> list[Row]:
    tools = ["sersyncpy"] + (["lsyncd"] if shutil.which("lsyncd") else [])
    with scratch("sersyncpy-b8-") as tmp:
        results = {tool: measure(Path(tmp) / tool, tool, args) for tool in tools}
    s = results["sersyncpy"]
    ref_seconds, ref_cpu = s["ref"]
    kinds = ", ".join(f"{n} {k}" for k, n in s["kinds"].items())
    what = (f"sustained churn, {s['ops']} operations in {s['elapsed']:.1f} s (seed "
            f"{args.seed}: {kinds}), {args.remotes} remotes")
    limit = (f"rsync -a --delete once after: {ref_seconds:.2f} s, CPU {ref_cpu:.2f} s"
             + differs_note(s["ref_diffs"]))
    rows = []
    lsyncd = results.get("lsyncd")
    chart = ChartData(f"churn, ~{args.rate:g} operations/s for {args.seconds:g} s",
                      lag_label="replicas equal after the writer (s)")
    for tool, r in results.items():
        name = "lsyncd delay 1" if tool == "lsyncd" else tool
        chart.latency[name] = r["lat"]
        chart.cost[name] = [[r["lag"], r["cpu"]]]
    chart.cost["plain rsync"] = [[ref_seconds, ref_cpu]]
    p99 = nearest_rank(s["lat"], 99)
    equal = s["lag"] is not None
    if lsyncd:
        reference = f"lsyncd delay 1: {summary(lsyncd)}; {limit}"
        ratio = (f"CPU {s['cpu'] / lsyncd['cpu']:.2f}x lsyncd's, "
                 f"{s['cpu'] / max(ref_cpu, 1e-9):.0f}x the limit's; p99 {ms(p99)}")
        met = s["cpu"] <= lsyncd["cpu"] and p99 <= 0.25 and equal
    else:
        reference, ratio, met = f"(lsyncd not installed); {limit}", f"p99 {ms(p99)}", None
    rows.append(Row("B8", f"{what}: sersyncpy", summary(s), reference, ratio,
                    "CPU ≤ lsyncd's, p99 ≤ 250 ms", met))
    if lsyncd:
        rows.append(Row("B8", f"{what}: lsyncd delay 1", summary(lsyncd), limit,
                        f"CPU {lsyncd['cpu'] / max(ref_cpu, 1e-9):.0f}x the limit's",
                        "(none)", None))
    return Rows(rows, chart)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--rate", type=float, default=100, help="operations per second")
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--remotes", type=int, default=3)
    p.add_argument("--poll", type=float, default=0.005, help="replica poll interval, s")
    p.add_argument("--patience", type=float, default=10,
                   help="how long to wait after the writer for every change to arrive, s "
                   "(a change still missing then counts as never seen)")
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
