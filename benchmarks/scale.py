"""B14 scale: a tree of 1,000,000 directories and 5,000,000 empty files, watched by sersyncpy
with inotify, by sersyncpy with fanotify (SERSYNCPY_WATCHER=fanotify) and by `inotifywait -r -m`
(inotify-tools), one after the other, alternating the order, and the same at a tenth of the tree
(its first top directory, g0: 100,000 directories and 500,000 files).

For each tool and size: seconds from process start until every watch is set (sersyncpy: its
"replicating to" line; inotifywait: "Watches established."), and until a change anywhere is
replicated: from the start, a new probe file is written every 50 ms into two leaf directories,
the first and the last in readdir order (a depth-first walk in that order watches the last one
last, a walk from a stack the first one), and the time counted is when the first probe of each
has reached the replica (inotifywait: has been reported), the later of the two; the kernel's
slab memory that stays once the watches are set (`sync; echo 2 > drop_caches` before the start
and again after the set-up: what is left is what the watches pin, the marks and each watched
directory's inode and dentry); peak RSS (VmHWM); and a burst into 1,000 brand-new nested
directories (10 chains of 100, a file written into each right after its mkdir): whether every
one reaches the replica, and how long after the last write.

The tree is built once, with a hard-linked replica beside it (the replica's directories are
its own, its files links to the source's: the start-up resync then sends nothing), in an ext4
image mounted by loop in --scratch (default /var/tmp/sersyncpy-scale; --plain: a directory
there instead), and kept for the next run (--rebuild builds it again; --remove deletes it).

    .venv/bin/python benchmarks/scale.py [--dirs 1000000] [--files 5000000] [--repeat 1]
        [--tools inotify,inotifywait,fanotify] [--scratch DIR] [--plain] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from harness import (
    Row,
    Sersyncpy,
    cpu_so_far,
    inotify_watch_room,
    machine,
    stop_checked,
    stopped_on_failure,
    vm_hwm_mib,
)
from watch_setup import wait_established

from sersyncpy.localdaemon import LocalDaemon
from sersyncpy.statusfile import default_path as status_path

LAYOUT = 1  # bump when build() changes what it makes
GROUPS, TOPS = 10, 10  # tree/gG/tT/mM/lL: 10 groups of 10 top directories each
# inotify: "watching N directories under ROOT in Xs"; fanotify: "watching everything under..."
WATCHING = re.compile(r"watching (?:(\d+) directories|everything) under .* in ([0-9.]+)s")
PROBE_EVERY = 0.05
POLL = 0.01
FLOW_TIMEOUT = 900.0
BURST_CHAINS, BURST_DEPTH = 10, 100
BURST_TIMEOUT = 60.0
RESYNC_TIMEOUT = 900.0
RESYNC_DONE = re.compile(r"start-up resync of .* done in ([0-9.]+)s")
SLAB_CACHES = {"marks": "inotify_inode_mark", "connectors": "fsnotify_mark_connector",
               "inodes": "ext4_inode_cache", "dentries": "dentry"}
HELD = ("marks", "connectors", "inodes")
FLAT_MIB = 16.0  # "flat": at most this much more kernel memory for the 10x tree


# --- the tree -----------------------------------------------------------------------------

def shape(dirs: int) -> tuple[int, int]:
    """(middle directories per top directory, leaf directories) for `dirs` directories."""
    per_top = 100 if dirs >= 200_000 else 10
    skeleton = GROUPS + GROUPS * TOPS + GROUPS * TOPS * per_top
    if dirs <= skeleton:
        raise SystemExit(f"--dirs must be more than {skeleton}")
    return per_top, dirs - skeleton


def middles(per_top: int) -> list[str]:
    return [f"g{g}/t{t:02}/m{m:03}" for g in range(GROUPS) for t in range(TOPS)
            for m in range(per_top)]


def group_size(dirs: int, files: int) -> tuple[int, int]:
    """(directories, g0 itself included; files) in g0, the first group."""
    per_top, leaves = shape(dirs)
    count = len(middles(per_top))
    mine = [i for i in range(leaves) if i % count < count // GROUPS]
    return (1 + TOPS + TOPS * per_top + len(mine),
            sum(files // leaves + (i < files % leaves) for i in mine))


def _build_leaves(args: tuple) -> None:
    """Leaves i ≡ worker (mod workers), each with its files; in both trees (files linked)."""
    src, rep, mids, leaves, files, worker, workers = args
    for i in range(worker, leaves, workers):
        rel = f"{mids[i % len(mids)]}/l{i:06}"
        os.mkdir(f"{src}/{rel}")
        os.mkdir(f"{rep}/{rel}")
        sfd = os.open(f"{src}/{rel}", os.O_RDONLY | os.O_DIRECTORY)
        rfd = os.open(f"{rep}/{rel}", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for j in range(i, files, leaves):
                name = f"f{j:07}"
                os.mknod(name, dir_fd=sfd)
                os.link(name, name, src_dir_fd=sfd, dst_dir_fd=rfd)
            _same_times(sfd, rfd)
        finally:
            os.close(sfd)
            os.close(rfd)


def _same_times(src, dst) -> None:
    """The replica's directory gets its source's times, as rsync -a would give it: the
    start-up resync then has nothing to set."""
    st = os.stat(src)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def build(base: Path, dirs: int, files: int) -> float:
    """base/tree (`dirs` directories below it, `files` empty files in the leaves) and
    base/replica (the same directories, the files hard links); returns the seconds taken."""
    started = time.monotonic()
    per_top, leaves = shape(dirs)
    mids = middles(per_top)
    for tree in (base / "tree", base / "replica"):
        tree.mkdir()
        for g in range(GROUPS):
            os.mkdir(tree / f"g{g}")
            for t in range(TOPS):
                os.mkdir(tree / f"g{g}/t{t:02}")
        for m in mids:
            os.mkdir(tree / m)
    workers = os.cpu_count() or 1
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_build_leaves, [(str(base / "tree"), str(base / "replica"), mids, leaves,
                                  files, w, workers) for w in range(workers)])
    tops = [f"g{g}/t{t:02}" for g in range(GROUPS) for t in range(TOPS)]
    for rel in [*mids, *tops, *(f"g{g}" for g in range(GROUPS)), "."]:
        _same_times(base / "tree" / rel, base / "replica" / rel)
    subprocess.run(["sync"], check=True)
    return time.monotonic() - started


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


class Scratch:
    """Where the tree lives: an ext4 image mounted by loop (or, with --plain, a directory on
    the scratch directory's own file system), built once and reused while its marker says
    it holds the sizes asked for."""

    def __init__(self, args):
        self.dir = Path(args.scratch)
        self.plain = args.plain
        self.image = self.dir / "fs.img"
        self.base = self.dir / ("plain" if self.plain else "mnt")
        self.dirs, self.files = args.dirs, args.files
        self.mounted_here = False
        self.built_seconds: Optional[float] = None

    @property
    def marker(self) -> Path:
        return self.base / "built.json"

    def wanted(self) -> dict:
        return {"dirs": self.dirs, "files": self.files, "layout": LAYOUT}

    def _format(self) -> None:
        if _mounted(self.base):
            subprocess.run(["umount", str(self.base)], check=True)
        self.image.unlink(missing_ok=True)
        inodes = 2 * self.dirs + self.files + 200_000  # the replica's directories, probes
        size = 4 * 2**30 + self.dirs * 40 * 2**10  # sparse; ~12 GB are written for 1M/5M
        subprocess.run(["truncate", "-s", str(size), str(self.image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-N", str(inodes), "-E",
                        "lazy_itable_init=1,lazy_journal_init=1", str(self.image)], check=True)

    def _mount(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if not _mounted(self.base):
            # noatime: a walk does not rewrite a million directory inodes;
            # noinit_itable: no background zeroing of the inode tables of a fresh image.
            subprocess.run(["mount", "-o", "loop,noatime,noinit_itable", str(self.image),
                            str(self.base)], check=True)
            self.mounted_here = True

    def open(self, rebuild: bool) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.plain:
            if rebuild or not self.image.exists():
                self._format()
            self._mount()
        else:
            self.base.mkdir(parents=True, exist_ok=True)
        try:
            have = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            have = None
        if have is not None and {k: have.get(k) for k in self.wanted()} == self.wanted():
            self.built_seconds = have.get("seconds")
            print(f"reusing the tree in {self.base} (built in {self.built_seconds:.0f} s)",
                  flush=True)
            return self.base
        if not self.plain and not rebuild:  # other sizes: a fresh file system is quickest
            self.close()
            self._format()
            self._mount()
        for name in ("tree", "replica"):
            if (self.base / name).exists():
                subprocess.run(["rm", "-rf", "--one-file-system", str(self.base / name)],
                               check=True)
        self.marker.unlink(missing_ok=True)
        print(f"building {self.dirs:,} directories and {self.files:,} files (and the "
              f"replica's) in {self.base} ...", flush=True)
        self.built_seconds = build(self.base, self.dirs, self.files)
        self.marker.write_text(json.dumps({**self.wanted(), "seconds": self.built_seconds}))
        print(f"built in {self.built_seconds:.0f} s", flush=True)
        return self.base

    def close(self) -> None:
        if self.mounted_here and _mounted(self.base):
            subprocess.run(["umount", str(self.base)], check=True)
            self.mounted_here = False

    def remove(self) -> None:
        if not self.plain and _mounted(self.base):
            subprocess.run(["umount", str(self.base)], check=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.dir)], check=True)


def chain(root: Path, last: bool) -> Path:
    """The leaf reached from `root` by always taking the first (or last) subdirectory in
    readdir order."""
    d = root
    while True:
        with os.scandir(d) as it:
            subs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        if not subs:
            return d
        d = d / subs[-1 if last else 0]


# --- what the kernel holds ----------------------------------------------------------------

def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("2")


def kernel_memory() -> dict[str, float]:
    """MiB in the slab after dropping what nothing pins: Slab and SUnreclaim of /proc/meminfo,
    and the caches of SLAB_CACHES (objects in use x their size in the slab; inotify and
    fanotify marks share one merged cache here)."""
    _marks_settled()
    drop_caches()
    time.sleep(0.5)
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("Slab", "SUnreclaim"):
                out[key] = int(value.split()[0]) / 1024
    for label, cache in SLAB_CACHES.items():
        sysfs = Path("/sys/kernel/slab") / cache
        try:
            objects = int((sysfs / "objects").read_text().split()[0])
            size = int((sysfs / "slab_size").read_text())
        except OSError:
            objects, size = _slabinfo(cache)
        out[label] = objects * size / 2**20
    return out


def _marks_settled(timeout: float = 60.0) -> None:
    """Wait until the marks of an exited watcher are freed (the kernel frees a group's
    marks after the process is gone): the mark cache's count unchanged for 1 s."""
    path = Path("/sys/kernel/slab") / SLAB_CACHES["marks"] / "objects"
    if not path.exists():
        time.sleep(2)
        return
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        now = path.read_text().split()[0]
        if now == last:
            return
        last = now
        time.sleep(1)


def _slabinfo(cache: str) -> tuple[int, int]:
    with open("/proc/slabinfo") as f:
        for line in f:
            words = line.split()
            if words and words[0] == cache:
                return int(words[1]), int(words[3])
    return 0, 0


def pinned(before: dict, after: dict) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def held(d: dict[str, float]) -> float:
    """MiB the watches hold: marks, connectors and inodes. Dentries and /proc/meminfo's Slab
    are left out: other work on the machine moves them by tens of MiB (a tmpfs file is its
    dentry), and a dentry kept in use keeps its inode, which is counted."""
    return sum(d[k] for k in HELD)


def pinned_text(d: dict[str, float]) -> str:
    return (f"{held(d):+.0f} MiB (marks {d['marks']:+.1f}, connectors {d['connectors']:+.1f}, "
            f"inodes {d['inodes']:+.1f})")


def pinned_noise(d: dict[str, float]) -> str:
    return (f"dentries {d['dentries']:+.0f}, Slab {d['Slab']:+.0f}, SUnreclaim "
            f"{d['SUnreclaim']:+.0f} MiB (system-wide)")


def watch_ranks(pid: int, dirs: list[Path]) -> tuple[list[Optional[int]], int]:
    """The order in which `pid` set its inotify watches on `dirs` (1 = first), and how many
    watches it holds: watch descriptors are handed out in increasing order."""
    wds: dict[int, int] = {}
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for fd in os.listdir(fdinfo):
        try:
            text = (fdinfo / fd).read_bytes()
        except OSError:
            continue
        for wd, ino in re.findall(rb"inotify wd:([0-9a-f]+) ino:([0-9a-f]+)", text):  # both in hex
            wds[int(ino, 16)] = int(wd, 16)
    order = sorted(wds.values())
    rank = {wd: i + 1 for i, wd in enumerate(order)}
    return [rank.get(wds.get(d.stat().st_ino, -1)) for d in dirs], len(order)


# --- probes and bursts --------------------------------------------------------------------

class Probes(threading.Thread):
    """From start(): a new file every PROBE_EVERY seconds in each of `dirs`; arrivals are
    seen in `replicas` (polled) or told by saw() (inotifywait's output)."""

    def __init__(self, tag: str, dirs: list[Path], replicas: Optional[list[Path]]):
        super().__init__(daemon=True)
        self.prefix = f"probe-{tag}-"
        self.dirs, self.replicas = dirs, replicas
        self.written: dict[str, tuple[int, float]] = {}  # name: (dir index, time)
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        self.writing = threading.Event()
        self.writing.set()
        self.done = threading.Event()
        self.t0 = time.monotonic()

    def saw(self, name: str, when: float) -> None:
        with self.lock:
            if name in self.written and name not in self.arrived:
                self.arrived[name] = when

    def run(self) -> None:
        k, next_write = 0, time.monotonic()
        while not self.done.is_set():
            now = time.monotonic()
            if self.writing.is_set() and now >= next_write:
                for i, d in enumerate(self.dirs):
                    name = f"{self.prefix}{i}-{k:05}"
                    with self.lock:
                        self.written[name] = (i, time.monotonic())
                    with open(d / name, "wb") as f:
                        f.write(b"probe\n")
                k += 1
                next_write += PROBE_EVERY
            if self.replicas is not None:
                for r in self.replicas:
                    try:
                        names = os.listdir(r)
                    except OSError:
                        continue
                    seen = time.monotonic()
                    for name in names:
                        if name.startswith(self.prefix):
                            self.saw(name, seen)
            time.sleep(POLL)

    def first(self) -> list[Optional[float]]:
        """Per directory, when its first probe arrived (seconds from t0)."""
        with self.lock:
            out: list[Optional[float]] = [None] * len(self.dirs)
            for name, when in self.arrived.items():
                i = self.written[name][0]
                if out[i] is None or when - self.t0 < out[i]:
                    out[i] = when - self.t0
            return out

    def wait_all_dirs(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while None in self.first():
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)
        return True

    def finish(self, settle: float = 1.0, timeout: float = 10.0) -> int:
        """Go on writing `settle` s, stop, and wait until every probe written after the first
        that arrived in its directory has arrived too; returns how many did not."""
        time.sleep(settle)
        self.writing.clear()
        time.sleep(PROBE_EVERY)
        deadline = time.monotonic() + timeout
        while True:
            missing = self._missing()
            if not missing or time.monotonic() > deadline:
                self.done.set()
                self.join()
                return len(missing)
            time.sleep(0.05)

    def _missing(self) -> list[str]:
        with self.lock:
            live = {}  # dir index: write time of the first probe that arrived
            for name in self.arrived:
                i, t = self.written[name]
                live[i] = min(t, live.get(i, t))
            return [n for n, (i, t) in self.written.items()
                    if i in live and t >= live[i] and n not in self.arrived]


def burst(base: Path) -> tuple[float, float, set[str]]:
    """BURST_CHAINS chains of BURST_DEPTH new nested directories under `base` (new too), a
    file written into each right after its mkdir; returns (start, end, the relative paths
    of the directories and files made)."""
    made: set[str] = set()
    started = time.monotonic()
    os.mkdir(base)
    for c in range(BURST_CHAINS):
        rel = f"c{c}"
        for depth in range(BURST_DEPTH):
            if depth:
                rel += f"/d{depth:02}"
            os.mkdir(base / rel)
            with open(base / rel / "f", "wb") as f:
                f.write(b"burst\n")
            made.update((rel, f"{rel}/f"))
    return started, time.monotonic(), made


def present(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for n in dirnames + [n for n in names if not n.startswith(".")]:
            out.add(os.path.normpath(os.path.join(rel, n)))
    return out


def wait_burst(replica: Path, made: set[str], timeout: float) -> tuple[Optional[float], int]:
    """(when every entry of `made` was in `replica`, or None; how many were missing then)."""
    deadline = time.monotonic() + timeout
    while True:
        missing = made - present(replica)
        if not missing:
            return time.monotonic(), 0
        if time.monotonic() > deadline:
            return None, len(missing)
        time.sleep(0.02)


def remove_extras(pairs: list[tuple[Path, Path]]) -> None:
    """Probe files and burst directories left in a probe directory and its replica."""
    for src, rep in pairs:
        for d in (src, rep):
            if not d.exists():
                continue
            for name in os.listdir(d):
                if name.startswith("burst-"):
                    shutil.rmtree(d / name)
                elif name.startswith("probe-") or name.startswith(".probe-"):
                    os.unlink(d / name)


# --- the runs -----------------------------------------------------------------------------

def _status(work: Path) -> dict:
    try:
        doc = json.loads(Path(status_path(str(work / "fail_log.sh"))).read_text())
    except (OSError, ValueError):
        return {}
    remote = (doc.get("remotes") or [{}])[0]
    root = (doc.get("roots") or [{}])[0]
    return {"updated": doc.get("updated", 0), "rsync_runs": remote.get("rsync_runs", 0),
            "paths": remote.get("paths", 0), "watches": root.get("watches", 0)}


def _fresh_status(work: Path, after: float, timeout: float = 10.0) -> dict:
    """The status file once written after time.time() `after`."""
    deadline = time.monotonic() + timeout
    while (s := _status(work)).get("updated", 0) <= after and time.monotonic() < deadline:
        time.sleep(0.1)
    return s


def run_sersyncpy(watcher: str, size: dict, work: Path, tag: str) -> dict:
    root, rep = size["root"], size["replica"]
    dirs = [chain(root, last=False), chain(root, last=True)]
    reps = [rep / d.relative_to(root) for d in dirs]
    work.mkdir(parents=True)
    daemon = LocalDaemon(work / "rsyncd", {"backup": rep}, password="bench")
    daemon.start()
    try:
        before = kernel_memory()
        tool = Sersyncpy(work, root, [daemon], env={"SERSYNCPY_WATCHER": watcher})
        probes = Probes(tag, dirs, reps)
        with stopped_on_failure(tool):
            probes.start()
            tool.start(resynced=False)  # returns at "replicating to": every watch is set
            setup = time.monotonic() - probes.t0
            cpu = cpu_so_far(tool.proc.pid)
            if not probes.wait_all_dirs(FLOW_TIMEOUT):
                raise SystemExit(f"{tag}: no probe replicated within {FLOW_TIMEOUT:.0f} s")
            first = probes.first()
            missed = probes.finish()
            ranks, watches = watch_ranks(tool.proc.pid, dirs)
            status_before = _fresh_status(work, time.time())
            log_at = len(tool.log_path.read_bytes())
            b_start, b_end, made = burst(dirs[1] / f"burst-{tag}")
            arrived, burst_missing = wait_burst(reps[1] / f"burst-{tag}", made, BURST_TIMEOUT)
            status_after = _fresh_status(work, time.time())
            burst_log = tool.log_path.read_bytes()[log_at:].decode(errors="replace")
            one_rsync = rsync_once(daemon, dirs[1], f"burst-{tag}", reps[1].relative_to(rep))
            resync = wait_resync(tool, RESYNC_TIMEOUT)
            after = kernel_memory()  # once the start-up resync's rsync no longer reads
            hwm = vm_hwm_mib(tool.proc.pid)
            stop_checked(tool)
            log = tool.log_path.read_text()
    finally:
        daemon.stop()
        remove_extras(list(zip(dirs, reps)))
    found = WATCHING.search(log)
    return {
        "setup": setup, "cpu": cpu, "flow": max(first), "first": first, "missed": missed,
        "walk": float(found.group(2)) if found else None,
        "watched": int(found.group(1) or 0) if found else None,
        "ranks": ranks, "watches": watches, "rss": hwm,
        "kernel": pinned(before, after), "resync": resync,
        "burst_lag": None if arrived is None else arrived - b_end,
        "burst_write": b_end - b_start, "burst_missing": burst_missing,
        "burst_rsyncs": sum(1 for line in burst_log.splitlines() if " paths, exit " in line),
        "burst_one_rsync": one_rsync,
        "burst_watches": status_after.get("watches", 0) - status_before.get("watches", 0),
        "watcher_lines": [line.split(": ", 1)[-1] for line in log.splitlines()
                          if re.search(r"fanotify|inotify|watcher", line, re.I)][:4],
    }


def rsync_once(daemon: LocalDaemon, parent: Path, name: str, rel: Path) -> float:
    """Seconds of one `rsync -a` of parent/name to a new directory beside its replica: what
    sending the burst's new tree costs in one call (the copy is removed afterwards)."""
    started = time.monotonic()
    subprocess.run(["rsync", "-a", "--sockopts=TCP_NODELAY", f"--port={daemon.port}",
                    f"--password-file={daemon.password_file}", f"./{name}/",
                    f"{daemon.user}@127.0.0.1::backup/{rel}/burst-ref-{name}/"],
                   cwd=parent, check=True)
    return time.monotonic() - started


def wait_resync(tool: Sersyncpy, timeout: float) -> Optional[float]:
    """The start-up resync's seconds, as its log line says, once it is done (None: not
    within `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = RESYNC_DONE.search(tool.log_path.read_text())
        if found:
            return float(found.group(1))
        time.sleep(0.5)
    return None


def run_inotifywait(size: dict, tag: str) -> dict:
    root = size["root"]
    dirs = [chain(root, last=False), chain(root, last=True)]
    before = kernel_memory()
    probes = Probes(tag, dirs, None)
    burst_seen: dict[str, float] = {}
    marker = f"/burst-{tag}/"

    def read(stdout) -> None:
        for raw in stdout:
            when = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            where, _, rest = line.partition(" ")
            events, _, name = rest.partition(" ")
            if name.startswith(probes.prefix):
                probes.saw(name, when)
            elif marker in where + "/" and "CREATE" in events.split(","):
                rel = os.path.relpath(where + name, str(dirs[1] / f"burst-{tag}"))
                burst_seen.setdefault(rel, when)

    probes.start()
    proc = subprocess.Popen(["inotifywait", "-r", "-m", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
    reader.start()
    try:
        wait_established(proc)
        setup = time.monotonic() - probes.t0
        cpu = cpu_so_far(proc.pid)
        if not probes.wait_all_dirs(FLOW_TIMEOUT):
            raise SystemExit(f"{tag}: inotifywait reported no probe in {FLOW_TIMEOUT:.0f} s")
        first = probes.first()
        missed = probes.finish()
        ranks, watches = watch_ranks(proc.pid, dirs)
        after = kernel_memory()
        _, b_end, made = burst(dirs[1] / f"burst-{tag}")
        time.sleep(3)  # what it reports comes within milliseconds; what it missed, never
        hwm = vm_hwm_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
        reader.join(timeout=10)
        proc.stderr.close()
        remove_extras([(d, d) for d in dirs])
    made_dirs = {p for p in made if not p.endswith("/f")}
    return {
        "setup": setup, "cpu": cpu, "flow": max(first), "first": first, "missed": missed,
        "ranks": ranks, "watches": watches, "rss": hwm, "kernel": pinned(before, after),
        "burst_dirs": len(made_dirs & burst_seen.keys()),
        "burst_files": len((made - made_dirs) & burst_seen.keys()),
        "burst_made": len(made_dirs),
    }


def fanotify_available() -> tuple[bool, str]:
    """Whether this sersyncpy knows SERSYNCPY_WATCHER=fanotify (its --version names it)."""
    out = subprocess.run([sys.executable, "-m", "sersyncpy", "--version"],
                         capture_output=True, text=True,
                         env={**os.environ, "SERSYNCPY_WATCHER": "fanotify"})
    text = (out.stdout + out.stderr).strip()
    return "fanotify" in text.lower(), text


# --- rows ---------------------------------------------------------------------------------

def _n(x: int) -> str:
    return f"{x:,}"


def _rank(r: dict) -> str:
    known = [x for x in r["ranks"] if x is not None]
    if not known or not r["watches"]:
        return ""
    return f" (its watch was #{_n(max(known))} of {_n(r['watches'])})"


def _resync(r: dict) -> str:
    return ("; its start-up resync (rsync's walk of both trees, beside the live pushes) "
            + ("still ran" if r["resync"] is None else f"took {r['resync']:.0f} s"))


def _burst(label: str, r: dict) -> str:
    entries = 2 * BURST_CHAINS * BURST_DEPTH
    got = (f"all {_n(entries)} entries" if not r["burst_missing"]
           else f"**{r['burst_missing']} of {_n(entries)} missing**")
    lag = "never" if r["burst_lag"] is None else f"{r['burst_lag']:.2f} s"
    walked = ("no new directory walked or watched" if not r["burst_watches"] else
              f"{r['burst_watches']:+,} watches: each new directory walked and watched")
    return (f"{label}: {got} on the replica {lag} after the last write (written in "
            f"{r['burst_write']:.2f} s), {r['burst_rsyncs']} rsync runs, {walked}")


def rows(results: dict, sizes: dict, fan_note: str, repeat: int) -> list[Row]:
    big, small = sizes["big"], sizes["small"]

    def one(tool: str, size: str) -> Optional[dict]:
        """The run of `tool` at `size` with the median set-up (the first of two)."""
        runs = sorted(results.get((tool, size), []), key=lambda r: r["setup"])
        return runs[(len(runs) - 1) // 2] if runs else None

    what = (f"{_n(big['dirs'])} directories, {_n(big['files'])} files (ext4 on loop)"
            + (f", median of {repeat} runs" if repeat > 1 else ""))
    out = []
    ino, ref, fan = one("inotify", "big"), one("inotifywait", "big"), one("fanotify", "big")
    if ino and ref:
        out.append(Row(
            "B14", f"scale, {what}: watch set-up (inotify)",
            f"sersyncpy inotify: every watch set {ino['setup']:.1f} s after process start "
            f"(walk {ino['walk']:.1f} s, CPU {ino['cpu']:.1f} s, {_n(ino['watched'] or 0)} "
            f"directories); changes replicated from {ino['flow']:.1f} s{_rank(ino)}; peak RSS "
            f"{ino['rss']:.0f} MiB{_resync(ino)}",
            f"inotifywait -r: \"Watches established.\" at {ref['setup']:.1f} s (CPU "
            f"{ref['cpu']:.1f} s); changes reported from {ref['flow']:.1f} s{_rank(ref)}; peak "
            f"RSS {ref['rss']:.0f} MiB",
            f"{ino['setup'] / ref['setup']:.2f}x", "≤ 2x", ino["setup"] <= 2 * ref["setup"]))
    si, sr = one("inotify", "small"), one("inotifywait", "small")
    if si and sr:
        out.append(Row(
            "B14", f"scale, a tenth (g0: {_n(small['dirs'])} directories, "
            f"{_n(small['files'])} files): watch set-up (inotify)",
            f"sersyncpy inotify: {si['setup']:.1f} s (walk {si['walk']:.1f} s), changes "
            f"replicated from {si['flow']:.1f} s; peak RSS {si['rss']:.0f} MiB",
            f"inotifywait -r: {sr['setup']:.1f} s, changes reported from {sr['flow']:.1f} s; "
            f"peak RSS {sr['rss']:.0f} MiB", f"{si['setup'] / sr['setup']:.2f}x", "≤ 2x", None))
    if fan:
        others = "; ".join(x for x in [
            f"inotifywait -r: {ref['flow']:.1f} s" if ref else "",
            f"sersyncpy inotify: {ino['flow']:.1f} s" if ino else ""] if x)
        out.append(Row(
            "B14", f"scale, {what}: from start until a change anywhere is replicated",
            f"sersyncpy fanotify: {fan['flow']:.2f} s (the first probe of the first and of "
            f"the last directory: {fan['first'][0]:.2f} s, {fan['first'][1]:.2f} s; "
            f"\"replicating to\" at {fan['setup']:.2f} s, CPU {fan['cpu']:.2f} s); "
            f"{fan['missed']} later probes missed{_resync(fan)}",
            others or "(none)",
            f"{fan['flow'] / ref['flow']:.3f}x inotifywait's" if ref else "",
            "≤ 1 s, none missed", fan["flow"] <= 1.0 and fan["missed"] == 0))
        out.append(Row(
            "B14", f"scale, {what}: peak RSS (VmHWM, start-up resync and burst included)",
            f"sersyncpy fanotify: {fan['rss']:.0f} MiB",
            "; ".join(x for x in [f"sersyncpy inotify: {ino['rss']:.0f} MiB" if ino else "",
                                  f"inotifywait -r: {ref['rss']:.0f} MiB" if ref else ""]
                      if x) or "(none)",
            f"{fan['rss'] / ino['rss']:.2f}x inotify's" if ino else "",
            "≤ 100 MiB", fan["rss"] <= 100))
    else:
        out.append(Row("B14", f"scale, {what}: fanotify", f"not run: {fan_note}", "", "",
                       "≤ 1 s, RSS ≤ 100 MiB, kernel memory flat", None))
    kernel = []
    for tool, label in (("fanotify", "sersyncpy fanotify"), ("inotify", "sersyncpy inotify"),
                        ("inotifywait", "inotifywait -r")):
        s, b = one(tool, "small"), one(tool, "big")
        if s and b:
            kernel.append((tool, label, held(s["kernel"]), held(b["kernel"]), b))
    if kernel:
        tool, label, at_small, at_big, b = kernel[0]
        growth = at_big - at_small
        out.append(Row(
            "B14", f"scale: kernel slab memory held once the watches are set, at "
            f"{_n(small['dirs'])} then {_n(big['dirs'])} directories (after drop_caches)",
            f"{label}: {at_small:+.0f} MiB, then {pinned_text(b['kernel'])}",
            "; ".join(f"{other}: {s:+.0f} MiB, then {pinned_text(r['kernel'])}"
                      for _, other, s, _, r in kernel[1:]) or "(none)",
            f"{growth:+.0f} MiB for 10x the tree",
            f"flat (≤ {FLAT_MIB:.0f} MiB more for 10x the tree)",
            (growth <= FLAT_MIB) if tool == "fanotify" else None))
    parts = [_burst(label, r) for label, r in (("sersyncpy fanotify", fan),
                                               ("sersyncpy inotify", ino)) if r]
    if parts:
        refs = [f"one rsync -a of the new tree: {(fan or ino)['burst_one_rsync']:.2f} s"]
        if ref:
            refs.append(f"inotifywait -r reported {ref['burst_dirs']} of "
                        f"{ref['burst_made']} new directories and {ref['burst_files']} of "
                        f"{ref['burst_made']} files")
        lags = ", ".join(f"{r['burst_lag'] / r['burst_one_rsync']:.1f}x" for r in (fan, ino)
                         if r and r["burst_lag"] is not None)
        out.append(Row(
            "B14", f"scale: burst into {_n(BURST_CHAINS * BURST_DEPTH)} brand-new nested "
            f"directories ({BURST_CHAINS} chains of {BURST_DEPTH}, a file in each) in the "
            f"{_n(big['dirs'])}-directory tree",
            "; ".join(parts), "; ".join(refs), f"lag {lags} one rsync" if lags else "",
            "nothing missed; no walk of new directories under fanotify",
            (not fan["burst_missing"] and not fan["burst_watches"]) if fan else None))
    return out


# --- main ---------------------------------------------------------------------------------

def rows_from(path: str) -> list[Row]:
    """The rows again from a run's results.json (runs/DATE/results.json in --scratch)."""
    saved = json.loads(Path(path).read_text())
    results = {tuple(k.split("/")): v for k, v in saved["results"].items()}
    return rows(results, saved["sizes"], saved["fan_note"], saved["repeat"])


def run(args) -> list[Row]:
    if args.rows_from:
        return rows_from(args.rows_from)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    fan_note = "not asked for (--tools)"
    if "fanotify" in tools:
        ok, text = fanotify_available()
        if not ok:
            fan_note = f"sersyncpy --version with SERSYNCPY_WATCHER=fanotify says {text!r}"
            tools.remove("fanotify")
            print(f"fanotify: {fan_note}; not run", flush=True)
    scratch = Scratch(args)
    if args.remove:
        scratch.remove()
        return []
    if args.build_only:
        scratch.open(args.rebuild)
        if not args.keep_mounted:
            scratch.close()
        return []
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        base = scratch.open(args.rebuild)
        remove_extras([(chain(base / "tree", last), chain(base / "replica", last))
                       for last in (False, True)])
        small_dirs, small_files = group_size(args.dirs, args.files)
        sizes = {
            "small": {"root": base / "tree/g0", "replica": base / "replica/g0",
                      "dirs": small_dirs, "files": small_files},
            "big": {"root": base / "tree", "replica": base / "replica",
                    "dirs": args.dirs + 1, "files": args.files},
        }
        runs_dir = Path(args.scratch) / "runs" / time.strftime("%Y%m%d-%H%M%S")
        with inotify_watch_room(args.dirs + 2 * BURST_CHAINS * BURST_DEPTH + 10):
            n = 0
            for i in range(args.repeat):
                for size in [x for x in ("small", "big") if x in args.sizes.split(",")]:
                    order = tools if n % 2 == 0 else tools[::-1]
                    n += 1
                    for tool in order:
                        tag = f"{tool}-{size}-{i}"
                        started = time.monotonic()
                        if tool == "inotifywait":
                            r = run_inotifywait(sizes[size], tag)
                        else:
                            r = run_sersyncpy(tool, sizes[size], runs_dir / tag, tag)
                        results.setdefault((tool, size), []).append(r)
                        (runs_dir / "results.json").write_text(json.dumps({
                            "sizes": {k: {"dirs": v["dirs"], "files": v["files"]}
                                      for k, v in sizes.items()},
                            "results": {f"{t}/{z}": v for (t, z), v in results.items()},
                            "fan_note": fan_note, "repeat": args.repeat}))
                        print(f"{tag} ({time.monotonic() - started:.0f} s): " + ", ".join(
                            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in r.items() if k != "kernel")
                            + "; kernel " + pinned_text(r["kernel"]) + "; "
                            + pinned_noise(r["kernel"]), flush=True)
                        time.sleep(1)  # the kernel frees the watches of an exited process
    finally:
        if not args.keep_mounted:
            scratch.close()
    LAST["built"] = scratch.built_seconds
    if scratch.built_seconds is not None:
        print(f"the tree's one-time build took {scratch.built_seconds:.0f} s (not counted)")
    return rows(results, sizes, fan_note, args.repeat)


METHOD = """\
How: the tree (tree/gG/tT/mM/lL, 10 x 10 x 100 directories above 989,890 leaves holding the
files) and its replica (its own directories, its files hard links to the source's, the same
times: the start-up resync sends nothing) are built once in an ext4 image mounted by loop
(`noatime`), outside this measurement. Each tool starts after `sync; echo 2 >
/proc/sys/vm/drop_caches`: the directories' inodes and dentries are not cached, their blocks
are (page cache), so a set-up reads no disk. "Changes replicated from": a probe file is
written every 50 ms from the start into the first and the last leaf in readdir order (a walk
in readdir order reaches the last one last, a walk from a stack the first one; the watch
numbers confirm it), and the figure is when the first probe of the later of the two is on
the replica (inotifywait: printed). Kernel memory: what stays in the slab after
`drop_caches`, before the start and again once the watches are set (sersyncpy: once its
start-up resync, one rsync of the whole root beside the live pushes, has ended): the marks,
their connectors and the ext4 inodes (objects in use x their size, /sys/kernel/slab), at g0
and at the whole tree. Dentries and /proc/meminfo's Slab are printed by the benchmark but
left out: other work on this machine moves them by tens to hundreds of MiB (a tmpfs file is
its dentry), and a dentry kept in use keeps its inode, which is counted. The burst: 10
chains of 100 new nested directories under the last leaf, a file written into each right
after its mkdir; the replica is polled until it holds all 2,000 entries; the reference is
one `rsync -a` of the finished burst into a new directory of the same daemon (paths 100
deep: rsync itself takes 1-2 s). This VM is shared: in two runs on 2026-11-29 the set-up of
the whole tree took inotifywait -r 143 s and 79 s, sersyncpy's inotify watcher 44 s and 32 s,
its fanotify watcher 0.17 s both times.
"""
LAST: dict = {}  # what run() learnt that section() tells: the build's seconds


def section(got: list[Row], started: float, seconds: float) -> str:
    """RESULTS.md's section for B14 (run_all.py --only B14)."""
    built = LAST.get("built")
    return "\n".join([
        "## B14 scale",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} on "
        f"{machine()}, in a run of its own ({seconds / 60:.0f} min; too long for the default "
        "run): `bash benchmarks/setup && .venv/bin/python benchmarks/run_all.py --only B14` "
        "(or `benchmarks/scale.py` alone). The tree is kept in /var/tmp/sersyncpy-scale for "
        "the next run; its one-time build"
        + (f" ({built / 60:.0f} min)" if built else "") + " is not counted.",
        "",
        "| | what | measured | reference (same run) | ratio | target | |",
        "|---|---|---|---|---|---|---|",
        *(row.markdown() for row in got),
        "",
        METHOD,
    ])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dirs", type=int, default=1_000_000)
    p.add_argument("--files", type=int, default=5_000_000)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--tools", default="inotify,inotifywait,fanotify")
    p.add_argument("--sizes", default="small,big", help="small: g0, a tenth; big: the tree")
    p.add_argument("--scratch", default="/var/tmp/sersyncpy-scale")
    p.add_argument("--plain", action="store_true",
                   help="a directory in --scratch instead of an ext4 image mounted by loop")
    p.add_argument("--rebuild", action="store_true", help="build the tree again")
    p.add_argument("--remove", action="store_true", help="delete --scratch and exit")
    p.add_argument("--build-only", action="store_true", help="build the tree (if needed), no runs")
    p.add_argument("--rows-from", metavar="JSON", help="no run: the rows of a saved one")
    p.add_argument("--write-results", action="store_true",
                   help="write the rows into RESULTS.md's B14 section")
    p.add_argument("--keep-mounted", action="store_true", help="leave the image mounted")
    return p


if __name__ == "__main__":
    arguments = parser().parse_args()
    begun, clock = time.time(), time.monotonic()
    got = run(arguments)
    for row in got:
        print(row.markdown())
    if arguments.write_results and got:
        import run_all  # its RESULTS.md section writer, as run_all.py --only B14 uses it

        results = Path(__file__).with_name("RESULTS.md")
        results.write_text(run_all.with_sections(results.read_text(), {
            run_all.SECTIONS["B14"]: section(got, begun, time.monotonic() - clock)}))
        print(f"wrote {results}")
