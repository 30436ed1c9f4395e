"""Tests of the shared harness in tests/conftest.py that start servers: the rsync daemon
(sersyncpy.localdaemon, as the fixture lays it out) and the leak guard in a real pytest run,
whose test of a fixture's daemon must pass it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RsyncDaemon, assert_trees_equal, tree_diff, wait_until
from unit.test_harness import make_tree

from sersyncpy.localdaemon import DaemonStartError, LocalDaemon

TESTS_DIR = Path(__file__).resolve().parents[1]


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
    make_tree(src)
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
    make_tree(src)
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
