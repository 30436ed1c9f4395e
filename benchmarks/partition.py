"""B12 partition: of 3 replicas, one sits behind a network namespace (a veth pair on a /30 of
198.18.0.0/15; its own rsync daemon runs inside, `ip netns exec`), two are local. B8's churn
writer (seeded, ~50 operations/s) runs; after --before seconds the namespace's link goes
down (packets dropped both ways: open connections stall, new ones hang) for --outage
seconds, comes back up, and the writer stops at once. Measured: the time from link-up
until the partitioned replica equals the source (types, modes, bytes, symlinks, empty
directories), the local replicas' lag after the writer, CPU and rsync processes. The same
run against lsyncd (default.rsync, delay 1) when installed. The namespace, its daemon and
every process are removed by PID, also on failure.

    .venv/bin/python benchmarks/partition.py [--before 5] [--outage 20] [--rate 50]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from churn import Churn, Writer
from harness import (
    ChartData,
    ConfiguredLsyncd,
    ConfiguredSersyncpy,
    Row,
    Rows,
    daemons,
    differs_note,
    replicas,
    scratch,
    stop_checked,
    stopped_on_failure,
    wait_equal_each,
)
from netns import Host

from sersyncpy.localdaemon import LocalDaemon


def measure(work: Path, tool: str, args) -> dict:
    src = work / "src"
    src.mkdir(parents=True)
    churn = Churn(src, args.seed)
    churn.populate()
    host = Host.create()
    try:
        far = LocalDaemon(work / "rsyncd-far", {"backup": work / "replica-far"},
                          password="bench", address=host.ip, netns=host.name)
        with daemons(work, args.remotes - 1) as near:
            try:
                far.start()
                ds = [far, *near]
                proc = (ConfiguredSersyncpy(work, src, ds) if tool == "sersyncpy"
                        else ConfiguredLsyncd(work, src, ds, 1))
                with stopped_on_failure(proc.start()):
                    writer = Writer(churn, args.rate, float("inf"))
                    writer.start()
                    try:
                        time.sleep(args.before)
                        host.link_down()
                        time.sleep(args.outage)
                        host.link_up()
                        up = time.monotonic()
                    finally:
                        writer_end = writer.finish(now=True)
                    times, diffs = wait_equal_each(src, replicas(ds), args.patience)
                    cpu = stop_checked(proc)
            finally:
                far.stop()
    finally:
        host.destroy()
    far_done, near = times[0], times[1:]
    return {"converged": None if far_done is None else far_done - up,
            "stop_after_up": writer_end - up, "ops": writer.ops,
            "near_lag": None if None in near else max(0.0, max(near) - writer_end),
            "diffs": diffs, "cpu": cpu, "rsyncs": proc.rsync_runs()}


def show(r: dict, args) -> str:
    conv = (f"converged {r['converged']:.2f} s after link-up" if r["converged"] is not None
            else f"**not converged {args.patience:g} s after link-up**")
    near = (f"local replicas {r['near_lag']:.2f} s after the writer" if r["near_lag"] is not None
            else "local replicas **not equal**")
    return (f"{conv} (writer stopped {r['stop_after_up'] * 1000:.0f} ms after it); {near}; "
            f"CPU {r['cpu']:.2f} s, {r['rsyncs']} rsync processes" + differs_note(r["diffs"]))


def run(args) -> list[Row]:
    tools = ["sersyncpy"] + (["lsyncd"] if shutil.which("lsyncd") else [])
    with scratch("sersyncpy-b12-") as tmp:
        results = {tool: measure(Path(tmp) / tool, tool, args) for tool in tools}
    s = results["sersyncpy"]
    what = (f"partition: one of {args.remotes} replicas cut off {args.outage:g} s during "
            f"churn (~{args.rate:g} operations/s, {s['ops']} in all)")
    lsyncd = results.get("lsyncd")
    reference = f"lsyncd delay 1: {show(lsyncd, args)}" if lsyncd else "(lsyncd not installed)"
    ratio = "n/a"
    if lsyncd and s["converged"] is not None and lsyncd["converged"] is not None:
        ratio = f"{s['converged'] / lsyncd['converged']:.2f}x lsyncd's"
    met = (s["converged"] is not None and s["converged"] <= 2 and not any(s["diffs"]))
    chart = ChartData(f"partition, a replica cut off {args.outage:g} s",
                      lag_label="cut-off replica equal after link-up (s)",
                      cost={("lsyncd delay 1" if tool == "lsyncd" else tool):
                            [[r["converged"], r["cpu"]]] for tool, r in results.items()})
    return Rows([Row("B12", f"{what}: sersyncpy", show(s, args), reference, ratio,
                     "converged ≤ 2 s after link-up", met)], chart)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=float, default=5, help="churn before the cut, s")
    p.add_argument("--outage", type=float, default=20, help="how long the link is down, s")
    p.add_argument("--rate", type=float, default=50, help="operations per second")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--remotes", type=int, default=3)
    p.add_argument("--patience", type=float, default=20,
                   help="how long to wait for the cut-off replica after link-up, s")
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
