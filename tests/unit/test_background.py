"""-d's pid file: locked while the daemon lives; a second instance is refused."""

import os

import pytest

from sersyncpy import background


def test_a_second_instance_on_the_same_pid_file_is_refused(tmp_path):
    path = tmp_path / "s.pid"
    first = background.PidFile(str(path))
    first.write()
    try:
        with pytest.raises(background.AlreadyRunning) as caught:
            background.PidFile(str(path))
        assert str(caught.value) == (f"another sersyncpy (pid {os.getpid()}) is running with "
                                     f"the pid file {path}")
    finally:
        first.remove()
    assert not path.exists()
    second = background.PidFile(str(path))  # free again
    second.remove()


def test_a_stale_pid_file_left_by_a_crash_is_no_obstacle(tmp_path):
    path = tmp_path / "s.pid"
    path.write_text("999999\n")
    pidfile = background.PidFile(str(path))
    pidfile.write()
    assert path.read_text() == f"{os.getpid()}\n"
    pidfile.remove()


def test_the_lock_is_taken_on_the_file_that_is_at_the_path(tmp_path, monkeypatch):
    # A stopping instance removes its file, then lets go of the lock: whoever locked the
    # removed file must not believe it holds the pid file.
    path = tmp_path / "s.pid"
    real_lock = background.PidFile._lock
    calls = []

    def lock_then_replace(self):
        real_lock(self)
        calls.append(1)
        if len(calls) == 1:
            os.unlink(self.path)
            path.write_text("")

    monkeypatch.setattr(background.PidFile, "_lock", lock_then_replace)
    pidfile = background.PidFile(str(path))
    assert len(calls) == 2
    assert os.fstat(pidfile._fd).st_ino == os.stat(path).st_ino
    pidfile.remove()
