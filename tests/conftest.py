"""Shared test harness: polling, tree comparison, free ports, a real rsync daemon, a leak guard.

Tests import the helpers with `from conftest import wait_until, tree_diff, ...`. The daemon
itself, with free_port and stop_process, is sersyncpy.localdaemon's; here it gets a layout.
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Union

import pytest

from sersyncpy.localdaemon import LocalDaemon

# Re-exported: tests import them from here with the other helpers.
from sersyncpy.localdaemon import free_port as free_port
from sersyncpy.localdaemon import stop_process as stop_process

StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# How long a test's threads and child processes may take to finish after its teardown.
LEAK_GRACE_SECONDS = 5.0
# How many differences assert_trees_equal prints before saying "and N more".
MAX_SHOWN_DIFFERENCES = 20


def pytest_configure(config: pytest.Config) -> None:
    # pyproject sets --strict-markers, so the marker must be registered.
    config.addinivalue_line(
        "markers", "allow_leaks: the leak guard does not fail this test for leftover "
        "threads or child processes",
    )


# --------------------------------------------------------------------------- polling


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | None = None,
) -> Any:
    """Call predicate() until it returns something truthy, and return that value.

    Raises AssertionError after `timeout` seconds, quoting `message` and the last value.
    The predicate is always evaluated at least once, and once more after the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    what = message or f"condition {getattr(predicate, '__qualname__', predicate)!r} not met"
    last = repr(value)
    if len(last) > 2000:
        last = last[:2000] + "..."
    raise AssertionError(f"{what} (waited {timeout:g} s; last value: {last})")


# --------------------------------------------------------------------------- tree comparison

_KIND_NAMES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char device",
    stat.S_IFBLK: "block device",
}


def _show(rel: bytes) -> str:
    """A relative path for messages: plain when it is printable UTF-8, else a bytes repr."""
    try:
        text = rel.decode("utf-8")
    except UnicodeDecodeError:
        return repr(rel)
    # A newline or control byte in a name would make the message ambiguous.
    return text if text.isprintable() else repr(rel)


def _same_bytes(a: bytes, b: bytes) -> bool:
    # Our own loop, not filecmp: filecmp caches by (size, mtime), which goes stale when a
    # file is rewritten within one mtime tick, exactly what polling in wait_until meets.
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk_a, chunk_b = fa.read(1 << 20), fb.read(1 << 20)
            if chunk_a != chunk_b:
                return False
            if not chunk_a:
                return True


def _compare_entry(src: bytes, dst: bytes, shown: str, diffs: list[str]) -> bool:
    """Append the differences of one entry present on both sides; True if both are dirs."""
    s, d = os.lstat(src), os.lstat(dst)
    s_kind, d_kind = stat.S_IFMT(s.st_mode), stat.S_IFMT(d.st_mode)
    if s_kind != d_kind:
        diffs.append(
            f"type differs: {shown} ({_KIND_NAMES.get(s_kind, oct(s_kind))} in src, "
            f"{_KIND_NAMES.get(d_kind, oct(d_kind))} in dst)"
        )
        return False
    if s_kind == stat.S_IFLNK:
        # Symlink permission bits mean nothing on Linux, so only the target is compared.
        s_target, d_target = os.readlink(src), os.readlink(dst)
        if s_target != d_target:
            diffs.append(
                f"symlink target differs: {shown} ({_show(s_target)} in src, "
                f"{_show(d_target)} in dst)"
            )
        return False
    s_mode, d_mode = stat.S_IMODE(s.st_mode), stat.S_IMODE(d.st_mode)
    if s_mode != d_mode:
        diffs.append(f"mode differs: {shown} ({s_mode:04o} in src, {d_mode:04o} in dst)")
    if s_kind == stat.S_IFREG:
        if s.st_size != d.st_size:
            diffs.append(
                f"content differs: {shown} ({s.st_size} bytes in src, {d.st_size} in dst)"
            )
        elif not _same_bytes(src, dst):
            diffs.append(f"content differs: {shown} (same size {s.st_size}, other bytes)")
    elif s_kind in (stat.S_IFCHR, stat.S_IFBLK) and s.st_rdev != d.st_rdev:
        diffs.append(f"device number differs: {shown}")
    return s_kind == stat.S_IFDIR


def _ignore_set(ignore: Iterable[str | bytes]) -> set[bytes]:
    # "./a/b/" and "a/b" name the same entry; compare them in one spelling.
    return {os.fsencode(os.path.normpath(path)) for path in ignore}


def tree_diff(
    src: StrOrBytesPath, dst: StrOrBytesPath, ignore: Collection[str | bytes] = ()
) -> list[str]:
    """Human-readable differences between two trees; [] when they are equal.

    Compares names, types, regular file bytes, permission bits (st_mode & 0o7777, not for
    symlinks) and symlink targets, never following symlinks. `ignore` lists relative paths
    to skip with their subtrees. The roots' own modes are not compared. Entries that vanish
    mid-walk are reported rather than raised, so the result is safe inside wait_until.
    """
    src_root, dst_root = os.fsencode(src), os.fsencode(dst)
    for side, root in (("src", src_root), ("dst", dst_root)):
        if not os.path.isdir(root):
            return [f"{side} root is not a directory: {_show(root)}"]
    ignored = _ignore_set(ignore)
    diffs: list[str] = []
    pending = [b""]  # relative directories still to compare; a stack, so no recursion limit
    while pending:
        rel_dir = pending.pop()
        try:
            s_names = set(os.listdir(os.path.join(src_root, rel_dir)))
            d_names = set(os.listdir(os.path.join(dst_root, rel_dir)))
        except (FileNotFoundError, NotADirectoryError):
            diffs.append(f"vanished during comparison: {_show(rel_dir)}")
            continue
        subdirs = []
        for name in sorted(s_names | d_names):
            rel = os.path.join(rel_dir, name) if rel_dir else name
            if rel in ignored:
                continue
            shown = _show(rel)
            if name not in d_names:
                diffs.append(f"missing in dst: {shown}")
            elif name not in s_names:
                diffs.append(f"extra in dst: {shown}")
            else:
                try:
                    both_dirs = _compare_entry(
                        os.path.join(src_root, rel), os.path.join(dst_root, rel), shown, diffs
                    )
                except FileNotFoundError:
                    # rsync renames its temporary files into place; the walk can race it.
                    diffs.append(f"vanished during comparison: {shown}")
                    continue
                if both_dirs:
                    subdirs.append(rel)
        pending.extend(reversed(subdirs))  # keep the report in sorted, depth-first order
    return diffs


def trees_equal(
    src: StrOrBytesPath, dst: StrOrBytesPath, ignore: Collection[str | bytes] = ()
) -> bool:
    """True when tree_diff finds nothing; meant for wait_until(lambda: trees_equal(a, b))."""
    return not tree_diff(src, dst, ignore)


def assert_trees_equal(
    src: StrOrBytesPath, dst: StrOrBytesPath, ignore: Collection[str | bytes] = ()
) -> None:
    """Raise AssertionError listing the first differences and their count."""
    diffs = tree_diff(src, dst, ignore)
    if not diffs:
        return
    shown = diffs[:MAX_SHOWN_DIFFERENCES]
    lines = [f"{len(diffs)} difference(s) between {os.fsdecode(src)} and {os.fsdecode(dst)}:"]
    lines += [f"  {diff}" for diff in shown]
    if len(diffs) > len(shown):
        lines.append(f"  ... and {len(diffs) - len(shown)} more")
    raise AssertionError("\n".join(lines))


# --------------------------------------------------------------------------- rsync daemon


class RsyncDaemon(LocalDaemon):
    """LocalDaemon in the tests' layout: module NAME is the directory root/NAME."""

    def __init__(
        self,
        root: Path,
        modules: Iterable[str] = ("backup",),
        auth: bool = True,
        options: Mapping[str, str] | None = None,
        port: int | None = None,
        password: str | None = None,
        address: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        root = Path(root)
        super().__init__(root, {name: root / name for name in modules}, auth, options, port,
                         password, address, netns)


@pytest.fixture
def rsync_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RsyncDaemon]]:
    """Factory: rsync_daemon(modules=("backup",), auth=True, options=None,
    address="127.0.0.1", netns=None) -> RsyncDaemon.

    The daemons of one test share their password, as the remotes of one config do.
    Each daemon gets its own directory from tmp_path_factory, outside the test's tmp_path,
    so a test may watch or replicate tmp_path without also catching the module directories.
    Every daemon started is stopped at teardown.
    """
    started: list[RsyncDaemon] = []
    # One password for all the daemons of a test: sersync's config has one password file.
    password = secrets.token_hex(12)

    def factory(
        modules: Iterable[str] = ("backup",),
        auth: bool = True,
        options: Mapping[str, str] | None = None,
        address: str = "127.0.0.1",
        netns: str | None = None,
    ) -> RsyncDaemon:
        daemon = RsyncDaemon(tmp_path_factory.mktemp("rsyncd"), modules, auth, options,
                             password=password, address=address, netns=netns)
        started.append(daemon)
        daemon.start()
        return daemon

    yield factory
    for daemon in started:
        daemon.stop()


@pytest.fixture
def daemon(rsync_daemon: Callable[..., RsyncDaemon]) -> RsyncDaemon:
    """One running daemon with module "backup" and authentication on."""
    return rsync_daemon()


# --------------------------------------------------------------------------- leak guard


class ChildProcess(NamedTuple):
    pid: int
    state: str  # one letter from /proc/PID/stat: R, S, D, Z (zombie), T, ...
    cmdline: list[str]


def child_processes(parent: int | None = None) -> list[ChildProcess]:
    """Direct children of `parent` (default: this process), zombies included."""
    parent = os.getpid() if parent is None else parent
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue  # exited while we looked
        # The command name sits in parentheses and may itself hold ") ", so cut at the last.
        comm_end = raw.rindex(b")")
        state, ppid = raw[comm_end + 2:].split()[:2]
        if int(ppid) != parent:
            continue
        if cmdline:
            argv = cmdline.rstrip(b"\0").split(b"\0")
        else:  # a zombie has an empty cmdline; show its command name instead
            argv = [raw[raw.index(b"(") + 1:comm_end]]
        children.append(ChildProcess(int(entry), state.decode(), [os.fsdecode(a) for a in argv]))
    return children


def find_leaks(
    threads_before: Collection[threading.Thread], children_before: Collection[int] = ()
) -> list[str]:
    """Threads alive now but not in threads_before, and child processes not in
    children_before (PIDs), each described on one line."""
    leaks = [
        f"thread still alive: {thread.name!r} (daemon={thread.daemon}, ident={thread.ident})"
        for thread in threading.enumerate()
        if thread not in threads_before and thread.is_alive()
    ]
    for child in child_processes():
        if child.pid in children_before:
            continue
        what = "zombie child process, never waited for" if child.state == "Z" else (
            "child process still running"
        )
        leaks.append(f"{what}: pid {child.pid} [{child.state}] {child.cmdline}")
    return leaks


@pytest.fixture(autouse=True)
def leak_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves threads or child processes behind.

    Autouse and function-scoped, so it is set up before the test's other function fixtures
    and torn down after them: daemons stopped by their fixtures do not count as leaks.
    Higher-scoped fixtures start before the snapshot, so their processes are not counted.
    """
    threads_before = frozenset(threading.enumerate())
    children_before = frozenset(child.pid for child in child_processes())
    yield
    if request.node.get_closest_marker("allow_leaks"):
        return
    try:
        # Threads told to stop may need a moment to notice; give them a grace period.
        wait_until(
            lambda: not find_leaks(threads_before, children_before), timeout=LEAK_GRACE_SECONDS
        )
    except AssertionError:
        leaks = find_leaks(threads_before, children_before)
        if leaks:
            pytest.fail(
                f"test leaked (still there {LEAK_GRACE_SECONDS:g} s after teardown; "
                "mark with @pytest.mark.allow_leaks to opt out):\n  " + "\n  ".join(leaks),
                pytrace=False,
            )
