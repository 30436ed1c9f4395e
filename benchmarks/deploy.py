"""B9 application deploy, with 3 local rsync daemons. A release is a tarball of a real package
tree (this venv's site-packages without bytecode: pip, setuptools, pytest, lxml, ... about
1,700 files), made once in the benchmark's scratch. The watched tree starts with that
release in current/ (replicated before the measurement); the writer then unpacks the release
with `tar -xf` into releases/new, swaps it in by renames (current -> releases/old,
releases/new -> current), runs `python -m compileall -q current` and creates a virtualenv
with `python -m venv current/venv` (pip from ensurepip, no network). Lag from the writer's
end until every replica equals the source (types, modes, bytes, symlinks, empty
directories), CPU seconds of the tool and its rsync children from the end of its start-up
sync, rsync processes. The same writer runs against sersyncpy, lsyncd (default.rsync,
delay 1) when installed, and alone followed by one `rsync -a --delete` per replica (the
limit: its time is the lag, its CPU the CPU). The daemons chroot, so that the venv's
absolute symlinks are stored verbatim.

    .venv/bin/python benchmarks/deploy.py [--remotes 3] [--patience 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path

from harness import (
    ChartData,
    Lsyncd,
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
    wait_equal,
)

# The interpreter itself, not a venv's or a pyenv shim: what a deploy script would call.
PYTHON = getattr(sys, "_base_executable", None) or sys.executable


# The application: these packages of this venv's site-packages (what scripts/setup --test
# installs), not the whole of it: what else a venv holds (benchmarks/setup's matplotlib and
# numpy, a profiler) grew the release from 1,750 files to 4,677 between two runs.
RELEASE_PACKAGES = ("pip", "setuptools", "pkg_resources", "_pytest", "pluggy", "lxml",
                    "hypothesis", "prometheus_client", "packaging", "pygments", "requests",
                    "urllib3", "idna", "charset_normalizer")


def make_release(tarball: Path) -> int:
    """A tarball of RELEASE_PACKAGES from this venv's site-packages, bytecode left out;
    returns its file count."""
    root = Path(sysconfig.get_paths()["purelib"])
    count = 0

    def keep(info: tarfile.TarInfo):
        nonlocal count
        if "__pycache__" in info.name.split("/") or info.name.endswith(".pyc"):
            return None
        count += info.isfile()
        return info

    with tarfile.open(tarball, "w") as tar:
        for name in RELEASE_PACKAGES:
            if (root / name).is_dir():
                tar.add(root / name, arcname=f"site-packages/{name}", filter=keep)
    return count


def unpack(tarball: Path, into: Path) -> None:
    into.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(into)], check=True)


def deploy(src: Path, tarball: Path) -> tuple[float, dict[str, float]]:
    """The writer; returns when it ended and how long each step took."""
    steps = {}
    t = time.monotonic()
    unpack(tarball, src / "releases" / "new")
    steps["unpack"], t = time.monotonic() - t, time.monotonic()
    os.rename(src / "current", src / "releases" / "old")
    os.rename(src / "releases" / "new", src / "current")
    steps["swap"], t = time.monotonic() - t, time.monotonic()
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(src / "current")], check=True,
                   stdout=subprocess.DEVNULL)
    steps["compileall"], t = time.monotonic() - t, time.monotonic()
    subprocess.run([PYTHON, "-m", "venv", str(src / "current" / "venv")], check=True)
    end = time.monotonic()
    steps["venv"] = end - t
    return end, steps


def measure(work: Path, tool: str, tarball: Path, args) -> dict:
    src = work / "src"
    (src / "releases").mkdir(parents=True)
    unpack(tarball, src / "current")
    with chroot_daemons(work, args.remotes) as ds:
        if tool == "rsync":
            reference_rsync(src, ds)  # the start state, replicated
            writer_end, steps = deploy(src, tarball)
            lag, cpu = reference_rsync(src, ds)
            diffs = [tree_diff(src, r) for r in replicas(ds)]
            return {"lag": lag, "cpu": cpu, "rsyncs": args.remotes, "steps": steps,
                    "diffs": diffs, "equal": not any(diffs),
                    "files": sum(len(names) for _, _, names in os.walk(src))}
        proc = Sersyncpy(work, src, ds) if tool == "sersyncpy" else Lsyncd(work, src, ds, 1)
        with stopped_on_failure(proc.start()):
            writer_end, steps = deploy(src, tarball)
            done, diffs = wait_equal(src, replicas(ds), args.patience)
            cpu = stop_checked(proc)
        return {"lag": None if done is None else done - writer_end, "cpu": cpu,
                "rsyncs": proc.rsync_runs(), "steps": steps, "diffs": diffs,
                "equal": done is not None}


def summary(r: dict) -> str:
    lag = (f"lag {r['lag']:.2f} s" if r["lag"] is not None
           else "**did not converge** within the patience")
    steps = ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items())
    return (f"{lag}, CPU {r['cpu']:.2f} s, {r['rsyncs']} rsync processes (writer: {steps} s)"
            + differs_note(r["diffs"]))


def run(args) -> list[Row]:
    tools = ["sersyncpy", "rsync"] + (["lsyncd"] if shutil.which("lsyncd") else [])
    with scratch("sersyncpy-b9-") as tmp, inotify_watch_room(20000):
        tarball = Path(tmp) / "release.tar"
        files = make_release(tarball)
        results = {}
        for tool in tools:
            results[tool] = measure(Path(tmp) / tool, tool, tarball, args)
            shutil.rmtree(Path(tmp) / tool)
    chart = ChartData("deploy (unpack, swap, compileall, venv)", cost={
        {"rsync": "plain rsync", "lsyncd": "lsyncd delay 1"}.get(tool, tool):
        [[r["lag"], r["cpu"]]] for tool, r in results.items()})
    ref = results.pop("rsync")
    final = ref["files"]
    what = (f"deploy: unpack {files} files, swap by renames, compileall, venv "
            f"({final} files at the end), {args.remotes} remotes")
    reference = f"rsync -a --delete once after the writer: {summary(ref)}"
    rows = []
    for tool, r in results.items():
        if r["lag"] is not None:
            ratio = f"lag {r['lag'] / ref['lag']:.2f}x, CPU {r['cpu'] / ref['cpu']:.2f}x"
        else:
            ratio = f"CPU {r['cpu'] / ref['cpu']:.2f}x"
        judged = tool == "sersyncpy"
        met = (r["lag"] is not None and r["equal"] and r["lag"] <= ref["lag"]
               and r["cpu"] <= 3 * ref["cpu"]) if judged else None
        name = tool if judged else "lsyncd delay 1"
        rows.append(Row("B9", f"{what}: {name}", summary(r), reference, ratio,
                        "CPU ≤ 3x, lag ≤ 1x plain rsync's", met))
    return Rows(rows, chart)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--remotes", type=int, default=3)
    p.add_argument("--patience", type=float, default=60,
                   help="how long to wait for the replicas after the writer, s")
    return p


if __name__ == "__main__":
    for row in run(parser().parse_args()):
        print(row.markdown())
