"""rsync_failures.failed_paths end to end: the failures of tests/unit/test_rsync_failures.py's
table provoked again against a real daemon, with read-only tmpfs mounts and immutable files
(root only), and the paths it names checked against what did arrive.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from unit.test_rsync_failures import HOSTILE_NAMES, hostile

from sersyncpy import rsync, rsyncrun
from sersyncpy.rsync_failures import failed_paths


def _push(daemon, src: Path, listed: list[str]) -> rsyncrun.Result:
    target = rsync.Target(ip="127.0.0.1", module="backup", port=daemon.port, user=daemon.user,
                          password_file=str(daemon.password_file))
    return rsyncrun.run(rsync.listed_argv(target), cwd=str(src), stdin=rsync.encode_list(listed))


def _tree(root: Path, files: dict[bytes, bytes]) -> None:
    for rel, data in files.items():
        path = os.path.join(os.fsencode(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: mount and chattr provoke the receiver's errors")


def _unmount(path: Path) -> None:
    # The daemon's child for the push may still be leaving the mount ("target is busy").
    def unmounted() -> bool:
        return subprocess.run(["umount", str(path)], capture_output=True).returncode == 0

    try:
        wait_until(unmounted, timeout=10, interval=0.1)
    except AssertionError:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def _read_only_tmpfs(path: Path, like: Path | None = None) -> Iterator[None]:
    """A read-only tmpfs over `path`; with `like`, that source directory gets the mount's
    mode and times, so rsync has nothing to set on the directory itself."""
    _require_root()
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        if like is not None:
            st = os.stat(path)
            os.chmod(like, 0o755)
            os.utime(like, ns=(st.st_atime_ns, st.st_mtime_ns))
        yield
    finally:
        _unmount(path)


@contextlib.contextmanager
def _immutable(*paths: Path) -> Iterator[None]:
    _require_root()
    done: list[Path] = []
    try:
        for path in paths:
            result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
            if result.returncode != 0:
                pytest.skip(f"chattr +i does not work here: {result.stderr.strip()}")
            done.append(path)
        yield
    finally:
        for path in done:  # else pytest could not remove the tmp directory
            subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("chroot", [False, True], ids=["plain", "chroot"])
def test_a_read_only_directory_fails_only_the_paths_in_it(rsync_daemon, tmp_path, chroot):
    daemon = rsync_daemon(options={"use chroot": "yes"} if chroot else None)
    module = daemon.modules["backup"]
    src = tmp_path / "src"
    _tree(src, {b"a/f": b"a", b"b/f": b"b", b"b/sub/s": b"s", b"c/f": b"c", b"top": b"t"})
    listed = ["a/f", "b/f", "b/sub/s", "c", "top"]
    with _read_only_tmpfs(module / "b"):
        result = _push(daemon, src, listed)
    assert result.code == 23, result.stderr
    failed = failed_paths(result.stderr, listed, str(src))
    assert failed == {"b/f", "b/sub/s"}, result.stderr
    for rel in ("a/f", "c/f", "top"):  # what it did not report did arrive
        assert (module / rel).read_bytes() == (src / rel).read_bytes()


def test_hostile_names_are_matched_exactly(daemon, tmp_path):
    module = daemon.modules["backup"]
    src = tmp_path / "src"
    _tree(src, {b"h/" + n: n for n in HOSTILE_NAMES} | {b"ok/" + n: n for n in HOSTILE_NAMES})
    (module / "ok").mkdir()
    listed = hostile("h/") + hostile("ok/")
    with _read_only_tmpfs(module / "h", like=src / "h"):
        result = _push(daemon, src, listed)
    assert result.code == 23, result.stderr
    # Each failure is named by its temporary name alone, not through the directory h.
    assert 'on "h"' not in result.stderr and result.stderr.count("mkstemp") == 8, result.stderr
    assert failed_paths(result.stderr, listed, str(src)) == set(hostile("h/"))
    for name in HOSTILE_NAMES:
        with open(os.path.join(os.fsencode(module), b"ok/" + name), "rb") as f:
            assert f.read() == name


def test_immutable_targets_fail_their_rename_and_unlink(daemon, tmp_path):
    module = daemon.modules["backup"]
    src = tmp_path / "src"
    odd = "p) failed (q"
    _tree(src, {b"a/f": b"new", b"a/g": b"g", b"d/keep": b"k", b"ok": b"ok"})
    _tree(module, {b"a/f": b"old", b"d/keep": b"k", b"d/gone": b"", f"d/{odd}".encode(): b""})
    os.utime(module / "a" / "f", (0, 0))  # older than the source's, or -u would skip it
    st = os.stat(module / "d")  # nothing to set on d itself: only its entries fail
    os.utime(src / "d", ns=(st.st_atime_ns, st.st_mtime_ns))
    listed = ["a/f", "a/g", "d/gone", f"d/{odd}", "ok"]
    with _immutable(module / "a" / "f", module / "d"):
        result = _push(daemon, src, listed)
    assert result.code == 23, result.stderr
    assert "rename" in result.stderr and "unlink(d/p) failed (q)" in result.stderr
    assert failed_paths(result.stderr, listed, str(src)) == {"a/f", "d/gone", f"d/{odd}"}
    assert (module / "a" / "g").read_bytes() == b"g" and (module / "ok").read_bytes() == b"ok"


def test_a_sender_error_skips_deletions_in_other_listed_directories(daemon, tmp_path):
    # Why a sender-side error needs `directories`: rsync then skips every --delete.
    module = daemon.modules["backup"]
    src = tmp_path / "src"
    _tree(src, {b"top": b"now a file", b"c/f": b"c"})
    _tree(module, {b"c/f": b"c", b"c/stale": b"deleted at the source"})
    listed = ["top/x", "c"]
    result = _push(daemon, src, listed)
    assert result.code == 23, result.stderr
    assert '[sender] link_stat "' in result.stderr
    assert (module / "c" / "stale").exists()  # c reported nothing, yet is not in sync
    assert failed_paths(result.stderr, listed, str(src)) is None
    failed = failed_paths(result.stderr, listed, str(src), directories=["c"])
    assert failed == {"top/x", "c"}
    retry = _push(daemon, src, sorted(failed - {"top/x"}))
    assert retry.code == 0, retry.stderr
    assert not (module / "c" / "stale").exists()
