"""The systemd protocol against real sockets: the exact datagrams, the abstract namespace,
silence when unset, no exception when the socket is gone; the watchdog and journal checks."""

import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time

import pytest

from sersyncpy import systemd


@pytest.fixture
def receiver(tmp_path, monkeypatch):
    """A datagram socket in tmp_path, named by NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def pending(sock):
    """Every datagram queued on sock, without waiting."""
    got = []
    sock.setblocking(False)  # a timeout would wait on an empty queue, even with MSG_DONTWAIT
    try:
        while True:
            got.append(sock.recv(4096))
    except BlockingIOError:
        return got
    finally:
        sock.settimeout(5)


def test_one_datagram_per_call_with_the_lines_joined(receiver):
    assert systemd.notify(systemd.READY, systemd.status("watching 3 directories"))
    assert receiver.recv(4096) == b"READY=1\nSTATUS=watching 3 directories"
    assert systemd.notify(systemd.WATCHDOG)
    assert receiver.recv(4096) == b"WATCHDOG=1"
    assert systemd.notify(systemd.RELOADING, systemd.mainpid(1234))
    assert receiver.recv(4096) == b"RELOADING=1\nMAINPID=1234"
    assert systemd.notify(systemd.STOPPING)
    assert receiver.recv(4096) == b"STOPPING=1"
    assert pending(receiver) == []


def test_the_daemons_moments_are_one_datagram_each(receiver):
    assert systemd.ready("watching 3 directories\nof 2 roots")
    assert receiver.recv(4096) == b"READY=1\nSTATUS=watching 3 directories of 2 roots"
    assert systemd.watchdog()
    assert receiver.recv(4096) == b"WATCHDOG=1"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading()
    reloading, usec = receiver.recv(4096).decode().split("\n")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    key, _, value = usec.partition("=")
    assert reloading == "RELOADING=1" and key == "MONOTONIC_USEC" and before <= int(value) <= after
    assert systemd.stopping()
    assert receiver.recv(4096) == b"STOPPING=1"
    assert pending(receiver) == []


def test_the_moments_are_false_when_not_under_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not (systemd.ready("x") or systemd.watchdog() or systemd.reloading()
                or systemd.stopping())


def test_abstract_namespace(monkeypatch):
    name = "sersyncpy-test-" + secrets.token_hex(8)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify(systemd.READY)
        assert sock.recv(4096) == b"READY=1"


def test_unset_or_empty_sends_nothing(receiver, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert systemd.notify(systemd.READY) is False
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert systemd.notify(systemd.READY) is False
    assert pending(receiver) == []


def test_missing_socket_is_false_and_logged_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(systemd, "_warned", False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-here"))
    with caplog.at_level(logging.DEBUG, logger="sersyncpy.systemd"):
        assert systemd.notify(systemd.WATCHDOG) is False
        assert systemd.notify(systemd.WATCHDOG) is False
    levels = [record.levelno for record in caplog.records]  # kept: warned once, then quiet
    assert levels == [logging.WARNING, logging.DEBUG]


def test_other_socket_kinds_are_refused(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert systemd.notify(systemd.READY) is False


def test_full_queue_gives_up_instead_of_blocking(receiver, monkeypatch):
    """Nobody reads: after max_dgram_qlen datagrams the kernel refuses more; notify() must
    return False after its patience, not hang the main loop."""
    monkeypatch.setattr(systemd, "SEND_PATIENCE_SECONDS", 0.05)
    accepted = 0
    while systemd.notify(systemd.WATCHDOG):
        accepted += 1
        assert accepted < 100_000, "the queue never filled"
    assert accepted > 0
    assert len(pending(receiver)) == accepted


def test_status_is_one_line():
    assert systemd.status("a\nb\r\nc\rd") == "STATUS=a b c d"


def test_monotonic_usec():
    key, _, value = systemd.monotonic_usec().partition("=")
    assert key == "MONOTONIC_USEC" and int(value) > 0


def test_safe_from_many_threads(receiver):
    sent = []

    def send(n):
        sent.extend(systemd.notify(systemd.status(f"{n}-{i}")) for i in range(20))

    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    got = []
    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    # Read while they send: the receive queue holds only a few datagrams (max_dgram_qlen).
    while len(got) < 80:
        got.append(receiver.recv(4096))
    for thread in threads:
        thread.join()
    assert sent == [True] * 80
    assert sorted(got) == sorted(f"STATUS={n}-{i}".encode() for n in range(4) for i in range(20))


@pytest.mark.parametrize(
    "usec, pid, expected",
    [
        ("20000000", None, 10.0),
        ("20000000", "self", 10.0),
        ("1000000", None, 0.5),
        ("20000000", "other", None),
        ("20000000", "garbage", None),
        ("garbage", None, None),
        ("", None, None),
        ("0", None, None),
        ("-5", None, None),
        (None, None, None),
    ],
)
def test_watchdog_seconds(monkeypatch, usec, pid, expected):
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert systemd.watchdog_seconds() == expected


def stream_of(fd):
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


def test_journald_stderr_in_process(monkeypatch, tmp_path):
    monkeypatch.setenv("JOURNAL_STREAM", stream_of(2))
    assert systemd.journald_stderr()
    with open(tmp_path / "other", "w") as other:
        monkeypatch.setenv("JOURNAL_STREAM", stream_of(other.fileno()))
        assert not systemd.journald_stderr()
    for garbage in ("", "123", "a:b", ":", "1:2:3"):
        monkeypatch.setenv("JOURNAL_STREAM", garbage)
        assert not systemd.journald_stderr()
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not systemd.journald_stderr()


def test_journald_stderr_follows_fd_2_of_a_real_process(tmp_path):
    """The stream a child's stderr is opened on, as journald hands it over."""
    code = "from sersyncpy import systemd; print(systemd.journald_stderr())"
    journal, other = tmp_path / "journal", tmp_path / "other"
    with open(journal, "w") as stream, open(other, "w") as elsewhere:
        env = dict(os.environ, JOURNAL_STREAM=stream_of(stream.fileno()))
        for stderr, expected in ((stream, "True"), (elsewhere, "False")):
            out = subprocess.run([sys.executable, "-c", code], stderr=stderr, env=env,
                                 capture_output=False, stdout=subprocess.PIPE, text=True,
                                 timeout=30)
            assert out.stdout.strip() == expected
