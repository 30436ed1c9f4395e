"""B13 stress tool: stress-ng's file stressors (rename, link, symlink, dentry, dir, filename;
one worker each, those the installed stress-ng has) run for 30 s with --temp-path in the
watched tree, beside 1,000 files of 4 KiB that stay untouched. All but filename run with
--keep-files (what they leave at the end stays, for the replicas to match); filename fails
with it ("stat succeeded on non-existent unlinked file"), so it runs as a second stress-ng
at the same time, in a directory of its own, without. sersyncpy replicates to 3 local
rsync daemons (chroot, so symlinks are stored verbatim). Measured: sersyncpy's peak RSS
(VmHWM, read before it stops), its CPU with its rsync children from the end of its start-up
sync, rsync processes, and the lag from stress-ng's exit until every replica equals the
source (types, modes, bytes, symlinks, empty directories). Reference in the same run: on 3
more daemons that hold the start state, one `rsync -a --delete` per replica run once after
sersyncpy has stopped (its time and CPU).

    .venv/bin/python benchmarks/stress.py [--seconds 30] [--stressors rename,link,...]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from harness import (
    ChartData,
    Row,
    Rows,
    Sersyncpy,
    chroot_daemons,
    differs_note,
    inotify_watch_room,
    reference_rsync,
    replicas,
    scratch,
    stop_checked,
    stopped_on_failure,
    tree_diff,
    vm_hwm_mib,
    wait_equal,
)

STRESSORS = "rename,link,symlink,dentry,dir,filename"


def available(wanted: list[str]) -> list[str]:
    """Those of `wanted` that this stress-ng has."""
    out = subprocess.run(["stress-ng", "--stressors"], capture_output=True, text=True).stdout
    have = set(out.split())
    return [s for s in wanted if s in have]


def bogo_ops(log: Path) -> dict[str, int]:
    """Bogo operations per stressor, from --metrics-brief."""
    ops = {}
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(r"metrc: \[\d+\] (\S+)\s+(\d+)\s+[\d.]+\s+[\d.]+", line)
        if m:
            ops[m.group(1)] = int(m.group(2))
    return ops


def measure(work: Path, stressors: list[str], args) -> dict:
    src = work / "src"
    base = src / "base"
    data = os.urandom(4096 + 64)
    for d in range(10):
        (base / f"d{d}").mkdir(parents=True)
        for f in range(args.base_files // 10):
            (base / f"d{d}" / f"f{f:03}").write_bytes(data[f % 64:f % 64 + 4096])
    runs = []  # (argv, log): the stressors that keep their files, and filename
    kept = [s for s in stressors if s != "filename"]
    for name, group, extra in (("kept", kept, ["--keep-files"]),
                               ("names", [s for s in stressors if s == "filename"], [])):
        if not group:
            continue
        (src / name).mkdir()
        argv = ["stress-ng", "--temp-path", str(src / name), *extra, "--metrics-brief",
                "--timeout", f"{args.seconds:g}s"]
        for stressor in group:
            argv += [f"--{stressor}", "1"]
        runs.append((argv, work / f"stress-ng-{name}.log"))
    with chroot_daemons(work, args.remotes) as ds, \
            chroot_daemons(work / "ref", args.remotes) as ref_ds:
        reference_rsync(src, ref_ds)  # the limit's replicas hold the start state
        proc = Sersyncpy(work, src, ds)
        with stopped_on_failure(proc.start()):
            started = []
            try:
                for argv, log in runs:
                    with open(log, "wb") as out:
                        started.append(subprocess.Popen(
                            argv, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True))
                for p in started:
                    p.wait(timeout=args.seconds + 60)
            finally:
                for p in started:
                    if p.poll() is None:  # its own process group: its workers too
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait()
            ended = time.monotonic()
            done, diffs = wait_equal(src, replicas(ds), args.patience)
            rss = vm_hwm_mib(proc.proc.pid)
            cpu = stop_checked(proc)
        entries = sum(len(dirs) + len(files) for _, dirs, files in os.walk(src))
        ref_seconds, ref_cpu = reference_rsync(src, ref_ds)
        ref_diffs = [tree_diff(src, r) for r in replicas(ref_ds)]
    return {"rss": rss, "cpu": cpu, "rsyncs": proc.rsync_runs(), "diffs": diffs,
            "lag": None if done is None else done - ended, "entries": entries,
            "ops": {k: v for _, log in runs for k, v in bogo_ops(log).items()},
            "exit": [p.returncode for p in started], "ref": (ref_seconds, ref_cpu),
            "ref_diffs": ref_diffs}


def run(args) -> list[Row]:
    stressors = available(args.stressors.split(","))
    with scratch("sersyncpy-b13-") as tmp, inotify_watch_room(300000):
        r = measure(Path(tmp), stressors, args)
    ops = ", ".join(f"{s} {r['ops'].get(s, '?')}" for s in stressors)
    lag = (f"lag {r['lag']:.2f} s" if r["lag"] is not None
           else f"**not equal {args.patience:g} s after stress-ng**")
    ref_seconds, ref_cpu = r["ref"]
    what = (f"stress-ng {args.seconds:g} s ({ops} bogo ops; exit {'/'.join(map(str, r['exit']))}), "
            f"{r['entries']} entries at the end, {args.remotes} remotes: sersyncpy")
    chart = ChartData(f"stress-ng file stressors, {args.seconds:g} s",
                      lag_label="replicas equal after stress-ng (s)",
                      cost={"sersyncpy": [[r["lag"], r["cpu"]]],
                            "plain rsync": [[ref_seconds, ref_cpu]]})
    return Rows([Row(
        "B13", what,
        f"peak RSS {r['rss']:.0f} MiB, CPU {r['cpu']:.2f} s, {r['rsyncs']} rsync processes, "
        f"{lag}" + differs_note(r["diffs"]),
        f"rsync -a --delete once after: {ref_seconds:.2f} s, CPU {ref_cpu:.2f} s"
        + differs_note(r["ref_diffs"]),
        f"CPU {r['cpu'] / max(ref_cpu, 1e-9):.1f}x, lag "
        + (f"{r['lag'] / ref_seconds:.2f}x" if r["lag"] is not None else "n/a"),
        "peak RSS < 100 MiB", r["rss"] < 100 and r["lag"] is not None)], chart)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--stressors", default=STRESSORS)
    p.add_argument("--base-files", type=int, default=1000)
    p.add_argument("--remotes", type=int, default=3)
    p.add_argument("--patience", type=float, default=120,
                   help="how long to wait for the replicas after stress-ng, s")
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
