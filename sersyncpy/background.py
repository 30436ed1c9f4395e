"""-d: running as a classic daemon (double fork, setsid, chdir /, umask 022, streams to the
log) with a locked pid file; the starting process waits until the daemon is replicating, so
its exit status says whether the start worked (sersync's parent just slept a second).
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from typing import Optional

from sersyncpy import statefiles
from sersyncpy.errors import SersyncpyError


class AlreadyRunning(SersyncpyError):
    exit_code = 1


def default_pidfile() -> str:
    if os.geteuid() == 0:
        return "/run/sersyncpy.pid"
    return os.path.join(statefiles.runtime_dir(), "sersyncpy.pid")


def default_log_file() -> str:
    if os.geteuid() == 0:
        return "/var/log/sersyncpy.log"
    return os.path.join(statefiles.state_dir(), "sersyncpy.log")


class PidFile:
    """A file holding our pid under an exclusive lock for the process's life: a second
    instance on the same file is refused (naming `what` the file guards), and a stale file
    left by a crash is no obstacle. Never opened through a symlink, never another user's."""

    def __init__(self, path: str, what: str = "", kind: str = "the pid file"):
        self.path = os.path.abspath(path)
        self.kind = kind  # what the file is, for messages: "the pid file", "the lock file"
        self.what = what or f"{kind} {self.path}"
        statefiles.ensure_dir_of(self.path)
        for _ in range(10):
            self._lock()
            # Locked, but is it still the file at `path`? An instance that was just stopping
            # removes its file before it lets go of the lock.
            try:
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    return
            except FileNotFoundError:
                pass
            os.close(self._fd)
        raise SersyncpyError(f"{self.path}: the pid file keeps being replaced")

    def _lock(self) -> None:
        self._fd = statefiles.open_own(self.path, os.O_RDWR, 0o644, self.kind)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self._fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AlreadyRunning(f"another sersyncpy (pid {other or '?'}) is running with "
                                     f"{self.what}") from None
            raise SersyncpyError(f"{self.path}: cannot lock {self.kind}: {exc.strerror}") \
                from None

    def write(self) -> None:
        """Our pid into the file, for people and for a second instance's message."""
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:  # a full disk: the lock itself holds all the same
            raise SersyncpyError(f"{self.path}: cannot write the pid into {self.kind}: "
                                 f"{exc.strerror}") from None

    def remove(self) -> None:
        """At exit, while still holding the lock (so the file removed is ours)."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)


def detach() -> int:
    """Double fork. Returns, in the daemon, the fd on which to report: b"ok" once it runs, or
    an error line. The starting process waits for that and exits 0 or 1 (never returns)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:  # the starting process
        os.close(write_end)
        os.waitpid(pid, 0)
        report = b""
        while chunk := os.read(read_end, 4096):
            report += chunk
        if report == b"ok":
            os._exit(0)
        message = report.decode("utf-8", "replace").strip() or "the daemon exited at start"
        print(f"sersyncpy: {message}", file=sys.stderr)
        os._exit(1)
    os.close(read_end)
    os.setsid()  # no controlling terminal: a closed ssh session does not stop us
    if os.fork():
        os._exit(0)  # the session leader goes, so we can never acquire a terminal again
    os.chdir("/")  # do not pin a mount point
    os.umask(0o022)  # sersync set 0: every file it created was world-writable
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    return write_end


def report(fd: Optional[int], message: str) -> None:
    """Tell the waiting starter how the start went (once)."""
    if fd is None:
        return
    try:
        os.write(fd, message.encode("utf-8"))
    except OSError:
        pass
    os.close(fd)
