"""B2 burst: 10,000 files of 4 KiB written into 100 new directories, pushed to 3 local rsync
daemons; time until all replicas match, rsync processes, CPU seconds of sersyncpy and its
children. Reference in the same run: one `rsync -a --delete` per replica, started in
parallel when the writer ends (the physical limit).

    .venv/bin/python benchmarks/burst.py [--files 10000] [--dirs 100] [--remotes 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sersyncpy.localdaemon import LocalDaemon

CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<head version="2.5">
    <inotify>
        <delete start="true"/><createFolder start="true"/><createFile start="false"/>
        <closeWrite start="true"/><moveFrom start="true"/><moveTo start="true"/>
        <attrib start="false"/><modify start="false"/>
    </inotify>
    <sersync>
        <localpath watch="{src}">
{remotes}
        </localpath>
        <rsync>
            <commonParams params="-a"/>
            <auth start="true" users="{user}" passwordfile="{pw}"/>
            <timeout start="true" time="60"/>
        </rsync>
        <failLog path="{faillog}" timeToExecute="60"/>
    </sersync>
</head>
"""


def replica_complete(root: Path, files: int, size: int) -> bool:
    """Cheap check while polling: the right number of files of the right size."""
    count = 0
    try:
        for d in os.scandir(root):
            if d.is_dir(follow_symlinks=False):
                for f in os.scandir(d.path):
                    if f.name.startswith("."):
                        return False  # an rsync temp file: still receiving
                    if f.stat(follow_symlinks=False).st_size != size:
                        return False
                    count += 1
    except FileNotFoundError:
        return False
    return count == files


def identical(src: Path, dst: Path) -> bool:
    for dirpath, _dirs, names in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for n in names:
            if (Path(dirpath) / n).read_bytes() != (dst / rel / n).read_bytes():
                return False
    return True


def wait_all(replicas: list[Path], files: int, size: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    pending = list(replicas)
    while pending:
        pending = [r for r in pending if not replica_complete(r, files, size)]
        if pending and time.monotonic() > deadline:
            raise SystemExit(f"replicas not complete after {timeout}s: {pending}")
        if pending:
            time.sleep(0.01)
    return time.monotonic()


def write_burst(src: Path, files: int, dirs: int, size: int) -> float:
    data = os.urandom(size)
    per_dir = files // dirs
    for d in range(dirs):
        os.mkdir(src / f"d{d:03}")
        for f in range(per_dir):
            with open(src / f"d{d:03}" / f"f{f:04}", "wb") as fh:
                fh.write(data[f % 64:] + data[:f % 64])
    return time.monotonic()


def cpu_of_waited(pid: int) -> float:
    """CPU seconds of a child and its reaped descendants (wait4's rusage on Linux)."""
    _, _, ru = os.wait4(pid, 0)
    return ru.ru_utime + ru.ru_stime


def run_sersyncpy(work: Path, args) -> dict:
    src = work / "src"
    src.mkdir()
    daemons = [LocalDaemon(work / f"rsyncd{i}", {"backup": work / f"replica{i}"},
                           password="bench") for i in range(args.remotes)]
    for d in daemons:
        d.start()
    try:
        remotes = "\n".join(f'            <remote ip="127.0.0.1" name="backup" port="{d.port}"/>'
                            for d in daemons)
        conf = work / "confxml.xml"
        conf.write_text(CONFIG.format(src=src, remotes=remotes, user=daemons[0].user,
                                      pw=daemons[0].password_file,
                                      faillog=work / "fail_log.sh"))
        log = open(work / "sersyncpy.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "sersyncpy", "-o", str(conf)],
                                stdout=log, stderr=log)
        while b"replicating to" not in (work / "sersyncpy.log").read_bytes():
            if proc.poll() is not None:
                raise SystemExit((work / "sersyncpy.log").read_text())
            time.sleep(0.01)
        start = time.monotonic()
        writer_end = write_burst(src, args.files, args.dirs, args.size)
        done = wait_all([d.modules["backup"] for d in daemons], args.files, args.size, 300)
        proc.send_signal(signal.SIGTERM)
        cpu = cpu_of_waited(proc.pid)
        log.close()
        text = (work / "sersyncpy.log").read_text()
        rsyncs = sum(1 for line in text.splitlines() if " paths, exit " in line
                     or " paths failed: " in line)
        assert all(identical(src, d.modules["backup"]) for d in daemons), "replica differs"
        return {"total": done - start, "writer": writer_end - start, "lag": done - writer_end,
                "rsyncs": rsyncs, "cpu": cpu}
    finally:
        for d in daemons:
            d.stop()


def run_reference(work: Path, args) -> dict:
    """Plain rsync -a --delete per replica, all started when the writer ends."""
    src = work / "src"
    src.mkdir()
    daemons = [LocalDaemon(work / f"rsyncd{i}", {"backup": work / f"replica{i}"},
                           password="bench") for i in range(args.remotes)]
    for d in daemons:
        d.start()
    try:
        writer_end = write_burst(src, args.files, args.dirs, args.size)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        procs = [subprocess.Popen(
            ["rsync", "-a", "--delete", "--sockopts=TCP_NODELAY", f"--port={d.port}",
             f"--password-file={d.password_file}", "./", f"{d.user}@127.0.0.1::backup/"],
            cwd=src) for d in daemons]
        for p in procs:
            p.wait()
        done = time.monotonic()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        assert all(identical(src, d.modules["backup"]) for d in daemons), "replica differs"
        return {"lag": done - writer_end, "rsyncs": len(procs), "cpu": cpu}
    finally:
        for d in daemons:
            d.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10000)
    p.add_argument("--dirs", type=int, default=100)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--remotes", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sersyncpy-bench-") as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        s = run_sersyncpy(Path(tmp) / "a", args)
        r = run_reference(Path(tmp) / "b", args)
    print(f"burst: {args.files} files of {args.size} B in {args.dirs} new dirs, "
          f"{args.remotes} remotes")
    print(f"  sersyncpy: writer {s['writer']:.2f}s, all replicas match {s['total']:.2f}s after "
          f"the first write, lag after the last write {s['lag']:.2f}s, "
          f"{s['rsyncs']} rsync processes ({s['rsyncs'] / args.remotes:.1f} per remote), "
          f"CPU {s['cpu']:.2f}s (with children)")
    print(f"  reference rsync -a --delete after the writer: lag {r['lag']:.2f}s, "
          f"CPU {r['cpu']:.2f}s")
    print(f"  ratios: lag {s['lag'] / r['lag']:.2f}x, CPU {s['cpu'] / r['cpu']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
