"""Runs every benchmark (B1-B13) with its defaults and rewrites benchmarks/RESULTS.md: the
table, the machine and the command line. Each row is measured side by side with its
reference in this one run.

    bash benchmarks/setup && .venv/bin/python benchmarks/run_all.py [--only B2,B3]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from harness import machine

# (id, module): each module has run(args) -> list[Row] and parser().
BENCHMARKS = [
    ("B1", "filterqueue"), ("B2", "burst"), ("B3", "trickle"), ("B4", "rename"),
    ("B5", "delete"), ("B6", "watch_setup"), ("B7", "fanout"), ("B8", "churn"),
    ("B9", "deploy"), ("B10", "bigfile"), ("B11", "deltrickle"),
    ("B12", "partition"), ("B13", "stress"),
]
# Why a row can miss its target, and where the CPU goes, as measured on 2026-11-29 (kept
# here so that a rewritten RESULTS.md keeps them; the figures above them are from the run).
NOTES = """\
## Rows that miss their target, and why

- **B3 p50 against one call.** With three remotes, three rsync client/daemon pairs share two
  cores: the p50 equals three rsync calls run in parallel (1.1-1.15x that), and with one
  remote it is 1.05-1.2x one call. The issue's own bar (p50 within 1.5x of three parallel
  calls) is met; the old target as written needs more cores than remotes.
- **B5 rsync count.** A deletion now settles 10 ms and goes, unless more than 100 have come
  (then the 0.5 s hold): the first deletions of the `rm -rf` leave in one or two small pushes
  before the burst is seen whole, so 3-4 rsync processes per remote instead of 3. The lag,
  which the hold used to make 3.3-4x, is 0.65-1.9x now.
- **B9 CPU.** 2.7x plain rsync's in two runs, 3.6x in the last, where the writer itself ran
  25-40 % slower than in the reference's run (compileall 3.6 s against 2.6 s): the deploy is
  a stream of ~1,000 files/s for several seconds, pushed every ~0.2 s per remote (110-130
  rsync processes against plain rsync's 3 once at the end). The lag target is met (0.76-0.87x).
- **B7 (16 remotes).** The figure divides the lag by sersyncpy's CPU only, while the sixteen
  receiving daemons share the same two cores. Counting them, sersyncpy's figure (0.9-1.0) is
  plain rsync's (0.97-1.0). With one remote a burst of 1,000 files arrives in 0.09 s against
  plain rsync's 0.05 s: the push policy's window (the burst is a stream) ends once no change
  has come for 5 mean intervals or 2 push costs, which is the 0.04 s.
- **B8 CPU and p99.** The budget (`<latency budgetMs>`, 200 ms) bounds how long a change
  gathers; the p99 (270-290 ms) adds the push itself, the watcher's delivery and three
  rsync clients and three daemons sharing two cores. Each remote gets one rsync every
  ~0.19 s (486 in 30 s for 3 remotes, against 2,953 before the policy), and each costs
  ~4 ms of client CPU at least (one `rsync -a` of one small file to a local daemon, measured
  alone: 3.9-4.2 ms), so sersyncpy's CPU is 1.08-1.18x lsyncd's, whose 1 s delay makes
  30 rsyncs per remote and a p50 of 0.58 s (p99 1.3-1.7 s; it also left changes unseen).
  A budget of ~0.5 s would meet the CPU target and miss the p99 one; both at once need
  fewer or cheaper rsync processes than one per remote per window (a persistent rsync per
  remote, which rsync's protocol does not offer).

## Where the CPU goes (B8, 30 s of churn at ~100 operations/s, 3 remotes)

Measured with /proc/PID/stat (sersyncpy against its reaped children) and py-spy
(`--gil`, samples holding the interpreter lock) on `benchmarks/churn.py`:

- **rsync clients: ~60 %** of the total (4 ms or more per call, ~490 calls). A call's
  cost barely depends on its size here: fork/exec, the daemon handshake and authentication,
  the file list. Fewer calls is what the push policy buys (2,953 calls and 26.7 s of CPU
  before it; 486 and 4.5 s now).
- **sersyncpy itself: ~40 %**, of which about half holds the interpreter lock: the watcher
  thread is ~75 % of that (inotify parsing in inotify_simple, turning kernel events into
  paths, pairing moves, delivering), the lanes ~20 % (planning, lstat, argv), the fail log
  ~2 %. The rest is in the kernel: reading inotify, spawning rsync and reading its pipes.
  A lane no longer wakes for every offer while it gathers, and each path's state on disk is
  looked up once for all remotes (SharedStates).
"""

HEADER = ("| | what | measured | reference (same run) | ratio | target | |\n"
          "|---|---|---|---|---|---|---|")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated ids, e.g. B2,B3")
    p.add_argument("--output", default=str(Path(__file__).with_name("RESULTS.md")))
    args = p.parse_args()
    only = {b.strip() for b in args.only.split(",") if b.strip()}
    rows, notes, failed = [], [], []
    started = time.time()
    for bench, module_name in BENCHMARKS:
        if only and bench not in only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            notes.append(f"- {bench}: not run ({exc})")
            continue
        print(f"running {bench} ({module_name}.py) ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            for row in module.run(module.parser().parse_args([])):
                rows.append(row)
                print(row.markdown(), flush=True)
        except (Exception, SystemExit) as exc:  # the other benchmarks still run
            traceback.print_exc()
            failed.append(bench)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            notes.append(f"- {bench}: **failed** after {time.monotonic() - t0:.0f} s: "
                         f"{type(exc).__name__}: {first}")
            continue
        notes.append(f"- {bench}: {time.monotonic() - t0:.0f} s")
    command = " ".join(["bash benchmarks/setup &&", ".venv/bin/python", *sys.argv])
    text = "\n".join([
        "# Benchmark results",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} on "
        f"{machine()}.",
        "",
        f"Reproduce: `{command}`",
        "",
        "Every ratio compares sersyncpy with its reference measured in the same run.",
        "",
        HEADER,
        *(row.markdown() for row in rows),
        "",
        NOTES,
        "Time per benchmark:",
        *notes,
        "",
        "Benchmarks run in /dev/shm (tmpfs) when it exists: this VM's disk varied tenfold in",
        "write speed within one session, which moved every replication figure with it.",
        "",
    ])
    Path(args.output).write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0 if not failed and all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
