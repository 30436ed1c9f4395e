"""B6 watch set-up: a tree of 100,000 directories and 1,000,000 empty files (100 top directories,
subdirectories below them, the files spread over the subdirectories). Seconds from process start
until every directory is watched, and peak RSS (VmHWM), of sersyncpy's inotify watcher
(SERSYNCPY_WATCHER=inotify: the fanotify one sets no watch per directory; B14, scale.py, compares
both) with one local rsync daemon as its remote, and of `inotifywait -r -m` (inotify-tools), run
one after the other, alternating which goes first, `--repeat` times on the same tree (built once
in a tmpfs, then deleted).

    .venv/bin/python benchmarks/watch_setup.py [--dirs 100000] [--files 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

from harness import Row, Sersyncpy, daemons, inotify_watch_room, scratch, vm_hwm_mib

TOP_DIRS = 100
WATCHING = re.compile(r"watching (\d+) directories under .* in ([0-9.]+)s")


def build_tree(root: Path, dirs: int, files: int) -> int:
    """`dirs` directories below `root` (TOP_DIRS of them at the top, the rest spread below
    those) and `files` empty files spread over the lowest ones; returns the directories to
    watch, root included."""
    top = [f"t{t:03}" for t in range(min(TOP_DIRS, dirs))]
    subs = [f"{top[i % len(top)]}/s{i:06}" for i in range(dirs - len(top))]
    for d in top + subs:
        os.mkdir(root / d)
    leaves = subs or top
    for i in range(files):
        os.mknod(root / leaves[i % len(leaves)] / f"f{i:07}")
    return dirs + 1


def remove_tree(root: Path) -> None:
    # rm is quicker than shutil.rmtree on a million files, and needs no Python memory.
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)


def measure_sersyncpy(work: Path, tree: Path, ds) -> dict:
    work.mkdir()
    proc = Sersyncpy(work, tree, ds, env={"SERSYNCPY_WATCHER": "inotify"})  # watches to set
    started = time.monotonic()
    proc.start(resynced=False)  # once the log says "replicating to": every watch is set
    seconds = time.monotonic() - started
    rss = vm_hwm_mib(proc.proc.pid)
    cpu = proc.stop()
    log = proc.log_path.read_text()
    found = WATCHING.search(log)
    if found is None or "cannot be watched" in log:
        raise SystemExit(f"sersyncpy did not watch the whole tree:\n{log}")
    return {"seconds": seconds, "rss": rss, "cpu": cpu, "watched": int(found.group(1)),
            "walk": float(found.group(2))}


def wait_established(proc: subprocess.Popen) -> None:
    """Read `inotifywait -r`'s stderr until it says every watch is set."""
    said = []
    for line in proc.stderr:
        if b"Watches established." in line:
            return
        said.append(line.decode(errors="replace"))
    raise SystemExit("inotifywait failed: " + "".join(said))


def measure_inotifywait(tree: Path) -> dict:
    started = time.monotonic()
    proc = subprocess.Popen(["inotifywait", "-r", "-m", str(tree)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_established(proc)
        seconds = time.monotonic() - started
        rss = vm_hwm_mib(proc.pid)
        watched = 0
        for fd in os.listdir(f"/proc/{proc.pid}/fdinfo"):
            with open(f"/proc/{proc.pid}/fdinfo/{fd}", "rb") as f:
                watched += f.read().count(b"inotify wd:")
    finally:
        proc.terminate()
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        proc.stderr.close()
    return {"seconds": seconds, "rss": rss, "cpu": usage.ru_utime + usage.ru_stime,
            "watched": watched}


def spread(values: list[float], unit: str, digits: int = 2) -> str:
    """median [min–max]"""
    return (f"{statistics.median(values):.{digits}f} {unit} "
            f"[{min(values):.{digits}f}–{max(values):.{digits}f}]")


def run(args) -> list[Row]:
    runs: dict[str, list[dict]] = {"sersyncpy": [], "inotifywait": []}
    with scratch("sersyncpy-b6-") as tmp:
        work, tree = Path(tmp), Path(tmp) / "tree"
        tree.mkdir()
        try:
            started = time.monotonic()
            expected = build_tree(tree, args.dirs, args.files)
            print(f"built {expected} directories, {args.files} files in "
                  f"{time.monotonic() - started:.0f} s", flush=True)
            with inotify_watch_room(expected), daemons(work, 1) as ds:
                for i in range(args.repeat):
                    order = ["sersyncpy", "inotifywait"][::1 if i % 2 == 0 else -1]
                    for tool in order:
                        r = (measure_sersyncpy(work / f"s{i}", tree, ds) if tool == "sersyncpy"
                             else measure_inotifywait(tree))
                        if r["watched"] != expected:
                            raise SystemExit(f"{tool} watched {r['watched']} of {expected}")
                        runs[tool].append(r)
                        print(f"run {i} {tool}: " + ", ".join(
                            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in r.items()), flush=True)
                        time.sleep(1)  # the kernel frees the watches of an exited process
        finally:
            remove_tree(tree)
    s, ref = runs["sersyncpy"], runs["inotifywait"]
    t_s = statistics.median(r["seconds"] for r in s)
    t_ref = statistics.median(r["seconds"] for r in ref)
    rss_s = max(r["rss"] for r in s)
    what = f"{expected} directories, {args.files} files, {args.repeat} runs"
    return [
        Row("B6", f"watch set-up, {what}: time to watching all",
            f"sersyncpy: {spread([r['seconds'] for r in s], 's')} from process start "
            f"(watch_all {spread([r['walk'] for r in s], 's')}; CPU "
            f"{spread([r['cpu'] for r in s], 's')})",
            f"inotifywait -r: {spread([r['seconds'] for r in ref], 's')} "
            f"(CPU {spread([r['cpu'] for r in ref], 's')})",
            f"{t_s / t_ref:.2f}x (median)", "≤ 2x", t_s <= 2 * t_ref),
        Row("B6", f"watch set-up, {what}: peak RSS",
            f"sersyncpy: {spread([r['rss'] for r in s], 'MiB', 0)}",
            f"inotifywait -r: {spread([r['rss'] for r in ref], 'MiB', 0)}",
            f"{rss_s / max(r['rss'] for r in ref):.2f}x (max)", "≤ 250 MiB", rss_s <= 250),
    ]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dirs", type=int, default=100000)
    p.add_argument("--files", type=int, default=1000000)
    p.add_argument("--repeat", type=int, default=3)
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
