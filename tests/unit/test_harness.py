"""Tests of the shared harness in tests/conftest.py: polling, tree_diff and the leak guard's
find_leaks. Everything runs for real: files, threads, child processes. (The rsync daemon, as
the fixture lays it out, and the leak guard in a real pytest run start servers:
tests/integration/test_harness.py.)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import conftest
import pytest
from conftest import (
    assert_trees_equal,
    child_processes,
    find_leaks,
    free_port,
    tree_diff,
    trees_equal,
    wait_until,
)

TESTS_DIR = Path(__file__).resolve().parents[1]
ODD_NAMES = [b"new\nline", b"-leading-dash", b"bad\xff", b"sp ace", "caf\u00e9".encode()]


def test_conftest_is_the_shared_one():
    # `from conftest import ...` must reach tests/conftest.py, not some other conftest.
    assert Path(conftest.__file__).resolve() == TESTS_DIR / "conftest.py"


# --------------------------------------------------------------------------- wait_until


def test_wait_until_returns_the_first_truthy_value():
    calls = []

    def third_time_lucky():
        calls.append(None)
        return "ready" if len(calls) >= 3 else None

    assert wait_until(third_time_lucky, timeout=5) == "ready"
    assert len(calls) == 3


def test_wait_until_timeout_quotes_message_and_last_value():
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"queue never filled .*last value: \[\]"):
        wait_until(lambda: [], timeout=0.2, message="queue never filled")
    assert time.monotonic() - started >= 0.2


def test_wait_until_default_message_names_the_predicate():
    def never():
        return 0

    with pytest.raises(AssertionError, match=r"never.*not met.*last value: 0"):
        wait_until(never, timeout=0.05)


def test_wait_until_lets_predicate_errors_through():
    def broken():
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wait_until(broken, timeout=1)


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# --------------------------------------------------------------------------- tree_diff


def make_tree(root: Path) -> None:
    """A small tree with every kind of entry tree_diff compares, odd names included."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.txt").write_bytes(b"beta\n")
    (root / "sub" / "deeper" / "c.bin").write_bytes(bytes(range(256)) * 10)
    (root / "empty").write_bytes(b"")
    os.chmod(root / "a.txt", 0o644)
    os.chmod(root / "sub", 0o755)
    os.chmod(root / "sub" / "b.txt", 0o640)
    os.symlink("a.txt", root / "link")
    os.symlink("no/such/target", root / "dangling")
    os.symlink("sub", root / "dirlink")
    raw_root = os.fsencode(root)
    for name in ODD_NAMES:
        with open(os.path.join(raw_root, name), "wb") as f:
            f.write(name)
        os.chmod(os.path.join(raw_root, name), 0o600)


@pytest.fixture
def twin_trees(tmp_path):
    """Two equal trees, src and dst, for a test to change one of."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for root in (src, dst):
        root.mkdir()
        make_tree(root)
    return src, dst


def test_tree_diff_equal_trees_with_odd_names(twin_trees):
    src, dst = twin_trees
    assert tree_diff(src, dst) == []
    assert tree_diff(os.fsencode(src), os.fsencode(dst)) == []
    assert trees_equal(src, dst)
    assert_trees_equal(src, dst)


def _remove(path):
    os.unlink(path)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _replace_bytes(path):
    _write(path, b"ALPHA\n")  # same size, other bytes


def _grow(path):
    _write(path, b"alpha, longer\n")


def _retarget(path):
    os.unlink(path)
    os.symlink("sub/b.txt", path)


def _file_to_dir(path):
    os.unlink(path)
    os.mkdir(path)


def _symlink_to_file(path):
    os.unlink(path)
    _write(path, b"alpha\n")


@pytest.mark.parametrize(
    ("rel", "change", "expected"),
    [
        (b"a.txt", _remove, "missing in dst: a.txt"),
        (b"sub/b.txt", _remove, "missing in dst: sub/b.txt"),
        (b"bad\xff", _remove, r"missing in dst: b'bad\xff'"),
        (b"new\nline", _remove, r"missing in dst: b'new\nline'"),
        (b"a.txt", _replace_bytes, "content differs: a.txt (same size 6, other bytes)"),
        (b"a.txt", _grow, "content differs: a.txt (6 bytes in src, 14 in dst)"),
        (b"a.txt", lambda p: os.chmod(p, 0o600), "mode differs: a.txt (0644 in src, 0600 in dst)"),
        (b"sub", lambda p: os.chmod(p, 0o2750), "mode differs: sub (0755 in src, 2750 in dst)"),
        (b"link", _retarget, "symlink target differs: link (a.txt in src, sub/b.txt in dst)"),
        (b"a.txt", _file_to_dir, "type differs: a.txt (file in src, dir in dst)"),
        (b"link", _symlink_to_file, "type differs: link (symlink in src, file in dst)"),
    ],
    ids=[
        "missing", "missing-nested", "missing-invalid-utf8", "missing-newline", "bytes",
        "size", "file-mode", "dir-mode", "symlink-target", "file-vs-dir", "symlink-vs-file",
    ],
)
def test_tree_diff_reports_each_kind_of_difference(twin_trees, rel, change, expected):
    src, dst = twin_trees
    change(os.path.join(os.fsencode(dst), rel))
    assert tree_diff(src, dst) == [expected]
    assert not trees_equal(src, dst)


def test_tree_diff_reports_extra_entries_on_dst(twin_trees):
    src, dst = twin_trees
    (dst / "new").write_bytes(b"")
    (dst / "sub" / "newdir").mkdir()
    assert tree_diff(src, dst) == ["extra in dst: new", "extra in dst: sub/newdir"]


def test_tree_diff_does_not_follow_symlinks(twin_trees):
    src, dst = twin_trees
    # Both "dirlink" symlinks point at "sub"; a change there shows once, under sub/ only.
    (dst / "sub" / "b.txt").write_bytes(b"changed\n")
    assert tree_diff(src, dst) == ["content differs: sub/b.txt (5 bytes in src, 8 in dst)"]


def test_tree_diff_ignores_given_subtrees(twin_trees):
    src, dst = twin_trees
    shutil.rmtree(dst / "sub")
    (dst / "a.txt").write_bytes(b"other\n")
    assert tree_diff(src, dst, ignore=["./sub/", "a.txt"]) == []
    assert tree_diff(src, dst, ignore=["sub"]) == [
        "content differs: a.txt (same size 6, other bytes)"
    ]


def test_tree_diff_does_not_compare_root_modes(twin_trees):
    src, dst = twin_trees
    os.chmod(dst, 0o700)
    os.chmod(src, 0o755)
    assert tree_diff(src, dst) == []


def test_tree_diff_missing_root_is_a_difference_not_an_error(tmp_path):
    (tmp_path / "src").mkdir()
    assert tree_diff(tmp_path / "src", tmp_path / "nope") == [
        f"dst root is not a directory: {tmp_path / 'nope'}"
    ]


def test_assert_trees_equal_lists_twenty_and_counts_all(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for i in range(25):
        (dst / f"f{i:02d}").write_bytes(b"")
    with pytest.raises(AssertionError) as raised:
        assert_trees_equal(src, dst)
    message = str(raised.value)
    assert message.startswith("25 difference(s) between ")
    assert message.count("extra in dst:") == 20
    assert "extra in dst: f19" in message and "f20" not in message
    assert message.endswith("... and 5 more")


# --------------------------------------------------------------------------- leak guard


def test_find_leaks_sees_a_thread_until_it_ends():
    before = frozenset(threading.enumerate())
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="leak-probe", daemon=True)
    thread.start()
    try:
        assert any("'leak-probe'" in leak for leak in find_leaks(before))
    finally:
        release.set()
        thread.join(timeout=5)
    assert find_leaks(before) == []


def test_find_leaks_sees_a_running_child_and_a_zombie():
    before = frozenset(child.pid for child in child_processes())
    argv = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    running = subprocess.Popen(argv, stdin=subprocess.PIPE)
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_until(lambda: {c.pid: c.state for c in child_processes()}.get(exited.pid) == "Z")
        leaks = find_leaks(threading.enumerate(), before)
        # [S] once it waits on stdin; [R] while a loaded machine is still starting it.
        assert any(leak in (f"child process still running: pid {running.pid} [{state}] {argv}"
                            for state in "SR") for leak in leaks), leaks
        assert any(f"zombie child process, never waited for: pid {exited.pid}" in leak
                   for leak in leaks)
    finally:
        running.stdin.close()  # EOF makes the child exit
        running.wait(timeout=10)
        exited.wait(timeout=10)
    assert find_leaks(threading.enumerate(), before) == []
