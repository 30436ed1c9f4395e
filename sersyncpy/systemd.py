"""The systemd service protocol, by hand: sd_notify datagrams to $NOTIFY_SOCKET, the watchdog
interval from $WATCHDOG_USEC, and whether stderr is the journal ($JOURNAL_STREAM).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Optional

logger = logging.getLogger(__name__)

# The messages sersyncpy sends (sd_notify(3)); several may go in one datagram, a line each.
READY = "READY=1"
STOPPING = "STOPPING=1"
RELOADING = "RELOADING=1"
WATCHDOG = "WATCHDOG=1"

# How long notify() retries while the manager's queue is full, then gives up: the main loop
# must not hang on a busy PID 1, and WATCHDOG=1 goes again half an interval later.
SEND_PATIENCE_SECONDS = 1.0
SEND_RETRY_SECONDS = 0.01

_lock = threading.Lock()
_sock: Optional[socket.socket] = None
_warned = False


def status(text: str) -> str:
    """STATUS=text on one line: a newline would start another (unknown) assignment."""
    return "STATUS=" + text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def mainpid(pid: int) -> str:
    return f"MAINPID={pid}"


def monotonic_usec() -> str:
    """MONOTONIC_USEC=now; systemd 253+ wants it with RELOADING=1 to match the reload."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def _address(value: str) -> Optional[bytes]:
    """The AF_UNIX address for $NOTIFY_SOCKET; None for kinds we do not speak (vsock:...)."""
    raw = os.fsencode(value)
    if raw.startswith(b"@"):
        return b"\0" + raw[1:]  # the abstract namespace
    return raw if raw.startswith(b"/") else None


def _socket() -> socket.socket:
    global _sock
    with _lock:
        if _sock is None:
            # Unconnected, so one socket serves whatever $NOTIFY_SOCKET says at each call and
            # survives a restart of the manager (a connected one would point at the old one).
            _sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        return _sock


def _failed(message: str, *args: object) -> bool:
    # Once at WARNING, then at DEBUG: it is called every few seconds and would flood the log.
    global _warned
    level = logging.DEBUG if _warned else logging.WARNING
    _warned = True
    logger.log(level, message, *args)
    return False


def notify(*lines: str) -> bool:
    """Send the lines as one datagram to $NOTIFY_SOCKET; False when unset or it failed.

    Never raises, and may be called from any thread (sendto on one datagram socket is atomic).
    """
    target = os.environ.get("NOTIFY_SOCKET", "")
    if not target or not lines:
        return False
    address = _address(target)
    if address is None:
        return _failed("NOTIFY_SOCKET=%r: not a unix socket, systemd will not be told", target)
    data = "\n".join(lines).encode("utf-8", "surrogateescape")
    deadline = time.monotonic() + SEND_PATIENCE_SECONDS
    try:
        sock = _socket()
        while True:
            try:
                # MSG_DONTWAIT: a full queue must not block the caller without bound.
                sock.sendto(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, address)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(SEND_RETRY_SECONDS)
    except OSError as error:
        return _failed("cannot notify systemd at %s: %s", target, error)


# The daemon's moments, each one datagram (sd_notify(3)); False when not under systemd.
def ready(text: str) -> bool:
    """READY=1 with STATUS=text: started, or reloaded."""
    return notify(READY, status(text))


def reloading() -> bool:
    """RELOADING=1, with the MONOTONIC_USEC that systemd 253+ matches to the reload."""
    return notify(RELOADING, monotonic_usec())


def stopping() -> bool:
    return notify(STOPPING)


def watchdog() -> bool:
    """The keep-alive ping, every watchdog_seconds()."""
    return notify(WATCHDOG)


def watchdog_seconds() -> Optional[float]:
    """How often to send WATCHDOG=1 (half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
    advises), or None when the watchdog is off, invalid, or meant for another process."""
    pid_text = os.environ.get("WATCHDOG_PID", "").strip()
    if pid_text:
        try:
            if int(pid_text) != os.getpid():
                return None  # inherited from a parent that was the one being watched
        except ValueError:
            return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", "").strip())
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def journald_stderr() -> bool:
    """True when fd 2 is the journal's stream ($JOURNAL_STREAM is its "DEV:INODE"), so the
    log lines may leave out their own timestamp: journald adds one."""
    dev, sep, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        expected = (int(dev), int(ino))
        st = os.fstat(2)
    except (ValueError, OSError):  # garbage, or no fd 2 at all
        return False
    return (st.st_dev, st.st_ino) == expected
