"""What every benchmark needs: local rsync daemons, a sersyncpy process with its CPU seconds,
the plain-rsync reference, and replica checks. Benchmarks measure; they assert nothing."""

from __future__ import annotations

import math
import os
import resource
import signal
import stat as stat_module
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sersyncpy.localdaemon import LocalDaemon

# Where benchmarks work: a tmpfs when there is one. This VM's disk varied tenfold in write
# speed within one session (10,000 files of 4 KiB in 1.6 s, later 14 s), which moved every
# replication figure with it; in memory the ratios measure replication, not the disk.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def scratch(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix, dir=SCRATCH)


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


@contextmanager
def own_file_system(path: Path, size: str = "1g"):
    """A tmpfs of its own mounted at `path` (root only), as a remote's file system is not
    the source's: a fanotify watcher marks a whole file system, and with the replicas
    beside the source it would read and drop every write of every local daemon (16
    remotes cost its process 3x the CPU so). Yields whether it is one."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(path)], stderr=subprocess.DEVNULL).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(path)], check=True)


@contextmanager
def _started(work: Path, count: int, options: Optional[dict] = None):
    """`count` local rsync daemons, each serving module "backup" from replicaN, on a file
    system of their own under work/remotes (see own_file_system)."""
    with own_file_system(work / "remotes", "16g"):
        started = [LocalDaemon(work / "remotes" / f"rsyncd{i}",
                               {"backup": work / "remotes" / f"replica{i}"},
                               password="bench", options=options or {}) for i in range(count)]
        try:
            for d in started:
                d.start()
            yield started
        finally:
            stop_all(started)


@contextmanager
def daemons(work: Path, count: int):
    """`count` local rsync daemons, each serving module "backup" from replicaN."""
    with _started(work, count) as started:
        yield started


def stop_all(ds: list[LocalDaemon]) -> None:
    """Stop daemons together: each takes ~0.4 s to exit after SIGTERM (rsync 3.5.0), so
    sixteen stopped one by one took 6.5 s of a benchmark's time."""
    for d in ds:
        if d.pid is not None:
            os.kill(d.pid, signal.SIGTERM)
    for d in ds:
        d.stop()


def replicas(ds: list[LocalDaemon]) -> list[Path]:
    return [d.modules["backup"] for d in ds]


class Sersyncpy:
    """sersyncpy replicating `src` to `ds`, as a child process whose CPU we can read."""

    def __init__(self, work: Path, src: Path, ds: list[LocalDaemon], env: Optional[dict] = None):
        remotes = "\n".join(f'            <remote ip="127.0.0.1" name="backup" port="{d.port}"/>'
                            for d in ds)
        self.conf = work / "confxml.xml"
        self.conf.write_text(CONFIG.format(src=src, remotes=remotes, user=ds[0].user,
                                           pw=ds[0].password_file,
                                           faillog=work / "fail_log.sh"))
        self.log_path = work / "sersyncpy.log"
        self.count = len(ds)
        self.cpu_at_start = 0.0
        self.env = {**os.environ, **(env or {})}
        self.proc: Optional[subprocess.Popen] = None

    def start(self, resynced: bool = True) -> Sersyncpy:
        """Start; return once every watch is set and (`resynced`) the start-up resync is
        done on every remote."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sersyncpy", "-o", str(self.conf)],
                stdout=log, stderr=log, env=self.env)
        # Watching, and the start-up resync done on every remote: what a benchmark measures
        # is its workload, not the start (lsyncd's start-up sync is left out alike).
        while (b"replicating to" not in (text := self.log_path.read_bytes())
               or (resynced and text.count(b"start-up resync of") < self.count)):
            if self.proc.poll() is not None:
                raise SystemExit(self.log_path.read_text())
            time.sleep(0.01)
        self.cpu_at_start = cpu_so_far(self.proc.pid) if resynced else 0.0
        return self

    def stop(self) -> float:
        """SIGTERM; returns the CPU seconds of sersyncpy and every rsync it ran since start()
        returned."""
        self.proc.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(self.proc.pid, 0)  # Linux: includes reaped descendants
        self.proc.returncode = 0
        return usage.ru_utime + usage.ru_stime - self.cpu_at_start

    def rsync_runs(self) -> int:
        return sum(1 for line in self.log_path.read_text().splitlines()
                   if " paths, exit " in line or " paths failed: " in line)


def file_sizes(root: Path) -> Optional[dict[str, int]]:
    """{relative path: size} of regular files, or None while rsync temp files are present."""
    sizes = {}
    for dirpath, _dirs, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in names:
            if name.startswith(".") and "." in name[1:]:
                return None  # an rsync temp file (.name.XXXXXX): still receiving
            try:
                sizes[os.path.normpath(os.path.join(rel, name))] = os.lstat(
                    os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                return None
    return sizes


def _index(root: Path) -> dict[str, dict[str, int]]:
    """{relative dir: {name: size}} of a tree, directories included (size -1)."""
    index: dict[str, dict[str, int]] = {}
    for dirpath, dirnames, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        entries = {n: -1 for n in dirnames}
        for n in names:
            entries[n] = os.lstat(os.path.join(dirpath, n)).st_size
        index[rel] = entries
    return index


def _matches(want: dict[str, dict[str, int]], root: Path) -> bool:
    """Whether `root` holds what `want` lists: a directory whose entry count differs ends
    the check at once, so a poll during a burst costs little CPU (the machine has 2 cores,
    and what a poll takes, the tool being measured loses); sizes only once counts agree."""
    listings = {}
    for rel, entries in want.items():
        try:
            with os.scandir(root / rel) as it:
                listing = list(it)
        except OSError:
            return False
        if len(listing) != len(entries):
            return False
        listings[rel] = listing
    for rel, listing in listings.items():
        entries = want[rel]
        for entry in listing:
            size = entries.get(entry.name)
            if size is None:
                return False
            if size >= 0 and entry.stat(follow_symlinks=False).st_size != size:
                return False
    return True


def wait_matching(src: Path, targets: list[Path], timeout: float = 300,
                  poll: float = 0.01) -> float:
    """Poll until every target has the source's entries with their sizes; returns the time.
    A cheap check while polling; `identical` verifies the bytes afterwards."""
    want = _index(src)
    deadline = time.monotonic() + timeout
    pending = list(targets)
    while pending:
        pending = [t for t in pending if not _matches(want, t)]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"replicas do not match after {timeout}s: {pending}")
        time.sleep(poll)
    return time.monotonic()


def identical(src: Path, dst: Path) -> bool:
    for dirpath, _dirs, names in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for name in names:
            if (Path(dirpath) / name).read_bytes() != (dst / rel / name).read_bytes():
                return False
    return file_sizes(src) == file_sizes(dst)


def reference_rsync(src: Path, ds: list[LocalDaemon]) -> tuple[float, float]:
    """One `rsync -a --delete` per replica, in parallel, now: (seconds, CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    procs = [subprocess.Popen(
        ["rsync", "-a", "--delete", "--sockopts=TCP_NODELAY", f"--port={d.port}",
         f"--password-file={d.password_file}", "./", f"{d.user}@127.0.0.1::backup/"],
        cwd=src) for d in ds]
    for p in procs:
        p.wait()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def machine() -> str:
    """One line naming the machine, for RESULTS.md."""
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rsync_version = subprocess.run(["rsync", "--version"], capture_output=True,
                                   text=True).stdout.split("\n")[0]
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {rsync_version}"


class Row:
    """One line of RESULTS.md: what was measured, against what, and whether the target held."""

    def __init__(self, bench: str, what: str, measured: str, reference: str, ratio: str,
                 target: str, met: Optional[bool]):
        self.bench, self.what, self.measured, self.reference = bench, what, measured, reference
        self.ratio, self.target, self.met = ratio, target, met

    def markdown(self) -> str:
        verdict = {True: "met", False: "**not met**", None: "(reference only)"}[self.met]
        return (f"| {self.bench} | {self.what} | {self.measured} | {self.reference} | "
                f"{self.ratio} | {self.target} | {verdict} |")


@dataclass
class ChartData:
    """What a benchmark measured, raw, for benchmarks/charts.py: run_all collects it beside
    the rows. Labels name the tool (and setup); seconds throughout.

    latency: {label: [seconds per change; inf for one never seen]}
    cost: {label: [[lag or None (never equal), CPU seconds], ...]}, a point per run; what
        the lag is measured from is `lag_label` (the x axis)
    fanout: {label: {remotes: [lag per repeat]}}; fanout_cpu alike with CPU seconds"""

    what: str
    latency: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    lag_label: str = "lag after the writer (s)"
    fanout: dict = field(default_factory=dict)
    fanout_cpu: dict = field(default_factory=dict)


class Rows(list):
    """A benchmark's rows, with its ChartData beside them as `.chart`."""

    def __init__(self, rows: list, chart: Optional[ChartData] = None):
        super().__init__(rows)
        self.chart = chart


def lsyncd_config(work: Path, src: Path, ds: list[LocalDaemon], delay: int) -> Path:
    """lsyncd's default.rsync to every daemon, at its own address (Debian's lsyncd 2.2)."""
    syncs = "\n".join(
        f'sync {{ default.rsync, source = "{src}", target = "{d.user}@{d.address}::backup", '
        f'delay = {delay}, rsync = {{ archive = true, password_file = "{d.password_file}", '
        f'_extra = {{ "--port={d.port}", "--sockopts=TCP_NODELAY" }} }} }}'
        for d in ds)
    conf = work / "lsyncd.lua"
    conf.write_text(f'settings {{ nodaemon = true, logfile = "{work}/lsyncd.log", '
                    f'insist = true, statusFile = "{work}/lsyncd.status" }}\n{syncs}\n')
    return conf


class Lsyncd:
    """lsyncd as a child process, started once its startup sync is done."""

    def __init__(self, work: Path, src: Path, ds: list[LocalDaemon], delay: int):
        self.work, self.conf = work, lsyncd_config(work, src, ds, delay)
        self.count = len(ds)
        self.cpu_at_start = 0.0
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> Lsyncd:
        self.proc = subprocess.Popen(["lsyncd", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        log = self.work / "lsyncd.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            if text.count("Startup of") >= self.count and text.count("finished") >= self.count:
                self.cpu_at_start = cpu_so_far(self.proc.pid)
                return self
            time.sleep(0.05)
        raise SystemExit("lsyncd did not finish its startup sync")

    def stop(self) -> float:
        self.proc.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = 0
        return usage.ru_utime + usage.ru_stime - self.cpu_at_start

    def rsync_runs(self) -> int:
        return (self.work / "lsyncd.log").read_text().count("Calling rsync")


def cpu_so_far(pid: int) -> float:
    """CPU seconds of a running process and of the children it has reaped (utime, stime,
    cutime, cstime of /proc/PID/stat), what wait4 will report for it when it ends."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    # fields[0] is the state (field 3): utime..cstime are fields 14-17.
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def vm_hwm_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a running process, in MiB; read it before stopping."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmHWM for PID {pid}")


def inotify_watches_in_use() -> int:
    """inotify watches held now by every process we can see (the limit is per user)."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
                    count += f.read().count(b"inotify wd:")
            except OSError:
                continue
    return count


@contextmanager
def inotify_watch_room(needed: int, margin: int = 20000):
    """Make room for `needed` more inotify watches, raising fs.inotify.max_user_watches only
    if the watches in use leave too little, and restoring it on the way out."""
    path = Path("/proc/sys/fs/inotify/max_user_watches")
    before = int(path.read_text())
    want = inotify_watches_in_use() + needed + margin
    if want > before:
        path.write_text(str(want))
    try:
        yield
    finally:
        if want > before:
            path.write_text(str(before))


class Traffic:
    """What one daemon logged since an offset: connections, the bytes it received from
    clients ("received Y bytes" of each summary line), and the file bytes it transferred
    (%b of its "recv" lines)."""

    def __init__(self, text: str):
        self.connections = text.count("] connect from ")
        self.finished = self.received = self.transferred = 0
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 7 and words[3] == "sent" and words[6] == "received":
                self.finished += 1
                self.received += int(words[7])
            elif len(words) >= 7 and words[3] == "recv":
                self.transferred += int(words[-1])


def log_offsets(ds: list[LocalDaemon]) -> list[int]:
    """Where each daemon's log ends now, for `traffic` to read what comes after."""
    return [d.log_file.stat().st_size if d.log_file.exists() else 0 for d in ds]


def traffic(ds: list[LocalDaemon], offsets: list[int], timeout: float = 30) -> list[Traffic]:
    """Each daemon's Traffic since `offsets`, once every connection has logged its summary."""
    deadline = time.monotonic() + timeout
    while True:
        found = [Traffic(d.log_file.read_bytes()[off:].decode("utf-8", "replace"))
                 for d, off in zip(ds, offsets)]
        if all(t.finished >= t.connections for t in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


# --- Added for B8-B13 (issue 15): tools at any daemon address and with chosen rsync
# options, clean-up on failure, a strict tree comparison and waiting for it. ---


class ConfiguredSersyncpy(Sersyncpy):
    """Sersyncpy with `common_params` as <commonParams> (default "-a", the class above's) and
    each remote at its daemon's own address (a daemon inside a network namespace listens on
    that namespace's address, not on 127.0.0.1)."""

    def __init__(self, work: Path, src: Path, ds: list[LocalDaemon], env: Optional[dict] = None,
                 common_params: str = "-a"):
        super().__init__(work, src, ds, env)
        remotes = "\n".join(f'            <remote ip="{d.address}" name="backup" '
                            f'port="{d.port}"/>' for d in ds)
        text = CONFIG.format(src=src, remotes=remotes, user=ds[0].user,
                             pw=ds[0].password_file, faillog=work / "fail_log.sh")
        old = '<commonParams params="-a"/>'
        assert old in text
        self.conf.write_text(text.replace(old, f'<commonParams params="{common_params}"/>'))


# lsyncd_config names each daemon at its own address already.
ConfiguredLsyncd = Lsyncd


@contextmanager
def stopped_on_failure(tool):
    """Yields `tool` (a started Sersyncpy or Lsyncd); if the block fails before tool.stop(),
    the process is terminated and reaped by its PID, so a failed run leaves nothing behind."""
    try:
        yield tool
    finally:
        proc = tool.proc
        if proc is not None and proc.returncode is None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def reference_rsync_with(src: Path, ds: list[LocalDaemon],
                         options: tuple[str, ...] = ("-a", "--delete")) -> tuple[float, float]:
    """reference_rsync with chosen rsync options, to each daemon at its own address:
    one call per replica, in parallel, now: (seconds, CPU seconds of the clients)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    procs = [subprocess.Popen(
        ["rsync", *options, "--sockopts=TCP_NODELAY", f"--port={d.port}",
         f"--password-file={d.password_file}", "./", f"{d.user}@{d.address}::backup/"],
        cwd=src) for d in ds]
    for p in procs:
        p.wait()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def _entries(root: Path) -> dict[str, tuple]:
    """{relative path: (kind, detail)} of everything under root (root itself left out):
    ("dir", mode), ("file", mode, size), ("link", target), ("other", file type)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + names:
            path = os.path.join(dirpath, name)
            key = os.path.normpath(os.path.join(rel, name))
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                out[key] = ("vanished",)
                continue
            mode = st.st_mode
            if stat_module.S_ISDIR(mode):
                out[key] = ("dir", stat_module.S_IMODE(mode))
            elif stat_module.S_ISREG(mode):
                out[key] = ("file", stat_module.S_IMODE(mode), st.st_size)
            elif stat_module.S_ISLNK(mode):
                out[key] = ("link", os.readlink(path))
            else:
                out[key] = ("other", stat_module.S_IFMT(mode))
    return out


def tree_diff(src: Path, dst: Path, limit: int = 5) -> list[str]:
    """How `dst` differs from `src`, at most `limit` items ([] when equal): every entry
    (directories, empty ones too, regular files, symlinks, others) with its type,
    permission bits, size, a symlink's target and a file's bytes. Times and owners are not
    compared; a hard link counts as the file it names (rsync -a does not keep links)."""
    want, have = _entries(src), _entries(dst)
    diffs = []
    for key in sorted(want.keys() | have.keys()):
        if len(diffs) >= limit:
            break
        a, b = want.get(key), have.get(key)
        if a != b:
            diffs.append(f"{key!r}: source {a or 'absent'}, replica {b or 'absent'}")
        elif a[0] == "file" and not _same_bytes(src / key, dst / key):
            diffs.append(f"{key!r}: same size, other bytes")
    return diffs


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def wait_equal(src: Path, targets: list[Path], timeout: float,
               poll: float = 0.01) -> tuple[Optional[float], list[list[str]]]:
    """Poll until every target equals the (no longer changing) source: (the time the last
    one did, or None after `timeout`; each target's differences at the end). A target
    counts as equal from the end of the first poll in which its entries and sizes matched
    (the cheap check of wait_matching), confirmed right then by tree_diff (bytes, types,
    modes, empty directories, symlinks); rsync's receiver renames each file into place, so
    a replica that matched then and compares equal just after was equal at that poll."""
    times, diffs = wait_equal_each(src, targets, timeout, poll)
    return (None if None in times else max(times)), diffs


def wait_equal_each(src: Path, targets: list[Path], timeout: float,
                    poll: float = 0.01) -> tuple[list[Optional[float]], list[list[str]]]:
    """wait_equal, with the time each target became equal (None: not within `timeout`)."""
    want = _index(src)
    deadline = time.monotonic() + timeout
    done: dict[int, float] = {}
    while True:
        for i, t in enumerate(targets):
            if i in done or not _matches(want, t):
                continue
            seen = time.monotonic()
            if not tree_diff(src, t, limit=1):
                done[i] = seen
        if len(done) == len(targets):
            return [done[i] for i in range(len(targets))], [[] for _ in targets]
        if time.monotonic() > deadline:
            return ([done.get(i) for i in range(len(targets))],
                    [[] if i in done else tree_diff(src, t) for i, t in enumerate(targets)])
        time.sleep(poll)


def nearest_rank(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; values may hold inf (never seen)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def differs_note(diffs: list[list[str]]) -> str:
    """'' when every replica equals the source, else what differs, for a row."""
    bad = [(i, d) for i, d in enumerate(diffs) if d]
    if not bad:
        return ""
    i, d = bad[0]
    return (f" **{len(bad)} replica(s) differ from the source**, e.g. replica {i}: "
            f"{'; '.join(d[:2])}")


@contextmanager
def chroot_daemons(work: Path, count: int):
    """daemons(), with "use chroot = yes": symlinks are then stored verbatim (without chroot
    rsyncd drops an absolute target's leading "/"), as on a real replica; needs root."""
    with _started(work, count, {"use chroot": "yes"}) as started:
        yield started


class ToolExited(Exception):
    """The tool being measured ended before the benchmark stopped it."""


def stop_checked(tool) -> float:
    """tool.stop() (a Sersyncpy or an Lsyncd); a tool that ended by itself during the run is
    reported with the end of its log, not as wait4's ECHILD."""
    code = tool.proc.poll()
    if code is None:
        return tool.stop()
    log = getattr(tool, "log_path", None) or tool.work / "lsyncd.log"
    try:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    except OSError as exc:
        tail = f"(no log: {exc})"
    raise ToolExited(f"{type(tool).__name__} (PID {tool.proc.pid}) ended by itself during the "
                     f"run, status {code}; {log} ends:\n{tail}")
