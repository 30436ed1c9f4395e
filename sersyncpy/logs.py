"""Where the log goes: stderr (without our timestamp when journald, which adds its own, reads
it), or a file (--log-file, -d) that SIGUSR1 reopens after logrotate moved it; and progress
lines for the long steps of a start.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Optional

from sersyncpy import statefiles, systemd
from sersyncpy.errors import SersyncpyError

TIMED = "%(asctime)s %(levelname)s %(name)s: %(message)s"
UNTIMED = "%(levelname)s %(name)s: %(message)s"


# Names of changed files are private to the tree's users: not readable by everyone.
LOG_MODE = 0o640


class ReopenableFileHandler(logging.FileHandler):
    """A log file that reopen() closes and opens again by name (logrotate moved it). Created
    0640, never opened through a symlink or as another user's file (statefiles.open_own)."""

    def __init__(self, path: str, redirect_std: bool = False):
        statefiles.ensure_dir_of(path)
        super().__init__(path, mode="a", encoding="utf-8", delay=False)
        self.redirect_std = redirect_std  # -d: stdout and stderr go to the file too
        self._redirect()

    def _open(self):
        fd = statefiles.open_own(self.baseFilename, os.O_WRONLY | os.O_APPEND, LOG_MODE,
                                  "the log file")
        return os.fdopen(fd, "a", encoding="utf-8", errors=self.errors)

    def reopen(self) -> None:
        try:
            stream = self._open()
        except (SersyncpyError, OSError) as exc:
            # Keep writing to the old file rather than lose the log (or stop replicating).
            logging.getLogger(__name__).error("cannot reopen the log file: %s; still writing "
                                              "to the old one", exc)
            return
        self.acquire()
        try:
            old, self.stream = self.stream, stream
            if old is not None:
                old.close()
        finally:
            self.release()
        self._redirect()

    def _redirect(self) -> None:
        # So that a stray print or a crash's traceback lands in the file too, not in the void.
        if self.redirect_std and self.stream is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self.stream.fileno(), 1)
            os.dup2(self.stream.fileno(), 2)


_file_handler: Optional[ReopenableFileHandler] = None


def setup(debug: bool, log_file: Optional[str] = None, detached: bool = False) -> None:
    """Log at INFO (DEBUG with --debug or <debug start="true">) to `log_file`, or stderr."""
    global _file_handler
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if log_file:
        _file_handler = ReopenableFileHandler(log_file, redirect_std=detached)
        handler: logging.Handler = _file_handler
        fmt = TIMED
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = UNTIMED if systemd.journald_stderr() else TIMED
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def reopen() -> None:
    """SIGUSR1: reopen the log file, if there is one."""
    if _file_handler is not None:
        _file_handler.reopen()
        logging.getLogger(__name__).info("log file reopened")


class Progress:
    """Counts and rate of a long step: a line rewritten in place when stderr is a terminal
    (and the log goes there), otherwise one log line every `interval` seconds."""

    def __init__(self, what: str, unit: str, interval: float = 5.0):
        self.what = what
        self.unit = unit
        self.interval = interval
        self.tty = _file_handler is None and sys.stderr.isatty()
        self.started = time.monotonic()
        self._shown = 0.0
        self._drawn = False

    def update(self, count: int, total: Optional[int] = None) -> None:
        now = time.monotonic()
        if now - self._shown < (0.2 if self.tty else self.interval):
            return
        self._shown = now
        elapsed = max(now - self.started, 1e-6)
        of = f" of {total:,}" if total is not None else ""
        line = (f"{self.what}: {count:,}{of} {self.unit} in {elapsed:.0f} s "
                f"({count / elapsed:,.0f}/s)")
        if self.tty:
            sys.stderr.write(f"\r\033[K{line}")
            sys.stderr.flush()
            self._drawn = True
        else:
            logging.getLogger("sersyncpy.progress").info("%s", line)

    def done(self) -> None:
        if self._drawn:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
