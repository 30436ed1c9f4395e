"""Runs every benchmark (B1-B7) with its defaults and rewrites benchmarks/RESULTS.md: the
table, the machine and the command line. Each row is measured side by side with its
reference in this one run.

    bash benchmarks/setup && .venv/bin/python benchmarks/run_all.py [--only B2,B3]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from harness import machine

# (id, module): each module has run(args) -> list[Row] and parser().
BENCHMARKS = [
    ("B1", "filterqueue"), ("B2", "burst"), ("B3", "trickle"), ("B4", "rename"),
    ("B5", "delete"), ("B6", "watch_setup"), ("B7", "fanout"),
]
HEADER = ("| | what | measured | reference (same run) | ratio | target | |\n"
          "|---|---|---|---|---|---|---|")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated ids, e.g. B2,B3")
    p.add_argument("--output", default=str(Path(__file__).with_name("RESULTS.md")))
    args = p.parse_args()
    only = {b.strip() for b in args.only.split(",") if b.strip()}
    rows, notes = [], []
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
        for row in module.run(module.parser().parse_args([])):
            rows.append(row)
            print(row.markdown(), flush=True)
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
        "Time per benchmark:",
        *notes,
        "",
    ])
    Path(args.output).write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
