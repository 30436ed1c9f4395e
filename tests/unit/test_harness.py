"""Tests of the shared harness in tests/conftest.py: polling, tree_diff, the rsync daemon
(sersyncpy.localdaemon, as the fixture lays it out) and the leak guard. Everything runs for
real: files, rsync, threads, processes.
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
    RsyncDaemon,
    assert_trees_equal,
    child_processes,
    find_leaks,
    free_port,
    tree_diff,
    trees_equal,
    wait_until,
)

from sersyncpy.localdaemon import DaemonStartError, LocalDaemon

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


def _make_tree(root: Path) -> None:
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
        _make_tree(root)
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


# --------------------------------------------------------------------------- rsync daemon


def _push(daemon: RsyncDaemon, src: Path, module: str = "backup", password_file=None):
    argv = [
        "rsync", "-a", f"--port={daemon.port}",
        f"--password-file={password_file or daemon.password_file}",
        f"{src}/", f"{daemon.url(module)}/",
    ]
    return subprocess.run(argv, capture_output=True, timeout=60, check=False)


def test_daemon_accepts_a_push_and_module_equals_source(daemon, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _make_tree(src)
    result = _push(daemon, src)
    assert result.returncode == 0, result.stderr
    assert_trees_equal(src, daemon.modules["backup"])
    # Transfer logging uses "%o %f %l %b", so each received file has a "recv" line.
    wait_until(lambda: "recv a.txt 6 " in daemon.log_file.read_text(errors="replace"))


def test_daemon_sanitizes_escaping_symlinks_unless_chrooted(rsync_daemon, tmp_path):
    # Documents a property of the fixture, not of rsync: without chroot, rsyncd (3.5) drops
    # a target's leading "/" and escaping "..", so such symlinks need a chrooted module.
    src = tmp_path / "src"
    src.mkdir()
    os.symlink("/abs/target", src / "abs")
    os.symlink("../outside", src / "up")
    plain = rsync_daemon()
    chrooted = rsync_daemon(options={"use chroot": "yes"})
    for daemon in (plain, chrooted):
        result = _push(daemon, src)
        assert result.returncode == 0, result.stderr
    assert tree_diff(src, plain.modules["backup"]) == [
        "symlink target differs: abs (/abs/target in src, abs/target in dst)",
        "symlink target differs: up (../outside in src, outside in dst)",
    ]
    assert_trees_equal(src, chrooted.modules["backup"])


def test_daemon_files_are_private_and_described(daemon):
    assert daemon.user == "sersync"
    assert daemon.url("backup") == "sersync@127.0.0.1::backup"
    assert daemon.password_file.read_text() == daemon.password + "\n"
    assert os.stat(daemon.password_file).st_mode & 0o777 == 0o600
    assert daemon.secrets_file.read_text() == f"sersync:{daemon.password}\n"
    assert os.stat(daemon.secrets_file).st_mode & 0o777 == 0o600
    assert daemon.pid is not None and daemon.modules["backup"].is_dir()


def test_daemon_refuses_a_wrong_password(daemon, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    result = _push(daemon, src, password_file=wrong)
    assert result.returncode == 5, result.stderr
    assert list(daemon.modules["backup"].iterdir()) == []


def test_daemon_without_auth_serves_several_modules(rsync_daemon, tmp_path):
    daemon = rsync_daemon(modules=("one", "two"), auth=False)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    for module in ("one", "two"):
        result = _push(daemon, src, module)
        assert result.returncode == 0, result.stderr
        assert_trees_equal(src, daemon.modules[module])


def test_daemon_stop_then_start_reuses_the_port(daemon, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"first")
    port, first_pid = daemon.port, daemon.pid

    daemon.stop()
    daemon.stop()  # idempotent
    assert daemon.pid is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert _push(daemon, src).returncode != 0

    daemon.start()
    assert daemon.port == port and daemon.pid not in (None, first_pid)
    result = _push(daemon, src)
    assert result.returncode == 0, result.stderr
    assert_trees_equal(src, daemon.modules["backup"])


def test_daemon_first_start_moves_off_a_taken_port(tmp_path):
    # Another server already listens there: a plain connect poll would wrongly succeed.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        daemon = RsyncDaemon(tmp_path / "rsyncd", port=taken)
        try:
            daemon.start()
            assert daemon.port != taken and daemon.pid is not None
            assert "bind() failed" in daemon.log_file.read_text()  # the first try did fail
            src = tmp_path / "src"
            src.mkdir()
            (src / "f").write_bytes(b"x")
            assert _push(daemon, src).returncode == 0
        finally:
            daemon.stop()


def test_daemon_restart_does_not_move_off_a_taken_port(daemon):
    # Clients were configured with this port; a daemon elsewhere would serve none of them.
    port = daemon.port
    daemon.stop()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with pytest.raises(DaemonStartError, match=rf"(?s)port {port} exited .*bind\(\) failed"):
            daemon.start()
        assert daemon.port == port and daemon.pid is None
    daemon.start()
    assert daemon.port == port and daemon.pid is not None


def test_local_daemon_serves_modules_where_the_caller_puts_them(tmp_path):
    # The demo's layout: the module directory is not under the daemon's own folder, and the
    # client password file exists before start, for a confxml.xml that names it.
    module = tmp_path / "demo" / "module"
    daemon = LocalDaemon(tmp_path / "demo" / "rsyncd", {"demo": module}, password="s3cret")
    daemon.write_config()
    assert daemon.password_file.read_text() == "s3cret\n"
    assert os.stat(daemon.password_file).st_mode & 0o777 == 0o600
    assert daemon.pid is None and not daemon.running
    daemon.secrets_file.write_text("sersync:other\n")  # start keeps what write_config wrote
    src = tmp_path / "src"
    src.mkdir()
    _make_tree(src)
    try:
        daemon.start()
        daemon.start()  # idempotent
        assert daemon.running
        assert _push(daemon, src, "demo").returncode == 5  # the edited secrets hold
        daemon.secrets_file.write_text("sersync:s3cret\n")
        result = _push(daemon, src, "demo")
        assert result.returncode == 0, result.stderr
        assert_trees_equal(src, module)
        assert f"pid={daemon.pid}" in repr(daemon)
    finally:
        daemon.stop()
    assert not daemon.running


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


LEAKY_TESTS = '''
import subprocess
import sys
import threading

import pytest
from conftest import trees_equal, wait_until

release = threading.Event()
keep = []


def test_leaks_a_thread_and_a_child():
    threading.Thread(target=release.wait, name="leaky-thread", daemon=True).start()
    # stdin=PIPE: the child exits when this pytest process does.
    keep.append(subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE))


@pytest.mark.allow_leaks
def test_opts_out():
    threading.Thread(target=release.wait, name="allowed-thread", daemon=True).start()


def test_fixture_daemon_is_stopped_before_the_guard_looks(daemon, tmp_path):
    assert wait_until(lambda: daemon.pid)
    assert trees_equal(tmp_path, tmp_path)
'''


def test_leak_guard_fails_a_leaky_test_in_a_real_pytest_run(tmp_path):
    # A separate pytest process, so the leak and the failure stay out of this run.
    shutil.copy(TESTS_DIR / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_leaky.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "3 passed, 1 error" in output, output
    assert "ERROR at teardown of test_leaks_a_thread_and_a_child" in output, output
    assert "thread still alive: 'leaky-thread'" in output, output
    assert "child process still running: pid " in output, output
    assert "sys.stdin.read()" in output, output
    assert "allowed-thread" not in output, output
