"""The metrics endpoint's HTTP server on real sockets: where it listens, and that idle,
trickling or surplus connections are hung up and cost a bounded number of threads."""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
from collections.abc import Iterator

import pytest
from conftest import free_port, wait_until

from sersyncpy import metrics
from sersyncpy.metrics import MetricsServer
from sersyncpy.statusfile import FileStatus, RemoteStatus, RootStatus, Status

IDLE = 50  # connections that never send a request
SURPLUS = 100  # more connections, to go well past the cap


def _snapshot() -> Status:
    """What metrics.Collector renders: one root, one remote, no plugin."""
    remote = RemoteStatus(root="/src", remote="127.0.0.1::m", pending=2, lag_seconds=1.5,
                          last_success=None, consecutive_failures=1, files_sent=3,
                          bytes_sent=300, events=9, events_collapsed=4, rsync_runs=5)
    return Status(format=1, running=True, updated=0.0, interval=2.0, remotes=(remote,),
                  roots=(RootStatus("/src", 3, 0, None, unreadable=1),), plugin=None,
                  fail_log=FileStatus("/f.sh", "No space left on device", 1.0, 2),
                  status_file=FileStatus("/f.status.json"), overflows=1)


def test_the_snapshot_is_rendered_as_it_stands(server: MetricsServer) -> None:
    text = _scrape(server.address[1])
    label = 'remote="127.0.0.1::m",root="/src"'
    for line in (f"sersyncpy_events_total{{{label}}} 9.0",
                 f"sersyncpy_events_collapsed_total{{{label}}} 4.0",
                 f"sersyncpy_pending{{{label}}} 2.0", f"sersyncpy_lag_seconds{{{label}}} 1.5",
                 f"sersyncpy_last_success_timestamp_seconds{{{label}}} 0.0",
                 'sersyncpy_watches{root="/src"} 3.0', "sersyncpy_inotify_overflows_total 1.0"):
        assert line in text, line


def test_unreadable_paths_and_failing_state_files_are_exposed(server: MetricsServer) -> None:
    text = _scrape(server.address[1])
    assert 'sersyncpy_unreadable_paths{root="/src"} 1.0' in text
    assert 'sersyncpy_state_file_failing{file="fail_log"} 1.0' in text
    assert 'sersyncpy_state_file_failing{file="status"} 0.0' in text
    assert 'sersyncpy_state_file_write_failures_total{file="fail_log"} 2.0' in text


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    """A MetricsServer without hostip (so on the default address) and its default limits."""
    started = MetricsServer("", free_port(), _snapshot)
    started.start()
    yield started
    started.stop()


def _scrape(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # no proxy
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(True)  # so that MSG_DONTWAIT, not a timeout, governs _hung_up's peek
    return sock


def _hung_up(sock: socket.socket) -> bool:
    """True once the server closed its end (the client reads end of file, or a reset)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_without_hostip_metrics_listen_on_loopback_only(server):
    host, port = server.address
    assert "sersyncpy_watches{root=\"/src\"} 3.0" in _scrape(port)
    # 127.0.0.2 is this machine too (lo routes 127/8): a server on 0.0.0.0 would answer there.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=5).close()
    assert host == "127.0.0.1"


def test_idle_trickling_and_surplus_connections_are_hung_up_with_bounded_threads(server):
    port = server.address[1]
    baseline = set(threading.enumerate())

    def server_threads() -> int:
        return sum(1 for thread in threading.enumerate() if thread not in baseline)

    clients = [_connect(port) for _ in range(IDLE + 1)]
    trickler = clients[IDLE]
    try:
        wait_until(lambda: server_threads() == IDLE + 1, timeout=5)
        assert "sersyncpy_inotify_overflows_total 1.0" in _scrape(port)  # served meanwhile
        wait_until(lambda: server_threads() == IDLE + 1, timeout=5)  # the scrape's is done
        # Up to the cap, connections get a thread each; beyond it they are closed at once.
        surplus = [_connect(port) for _ in range(SURPLUS)]
        clients += surplus
        wait_until(lambda: any(map(_hung_up, surplus)), timeout=2,
                   message="connections beyond the cap are not closed at once")
        wait_until(lambda: server_threads() + sum(map(_hung_up, surplus)) == len(clients),
                   timeout=2)
        assert server_threads() == metrics.MAX_CONNECTIONS
        # A byte at a time keeps each recv() short of the timeout: the deadline still holds.
        request = itertools.chain(b"GET /metrics", itertools.repeat(ord("x")))

        def trickle() -> bool:
            if _hung_up(trickler):
                return True
            try:
                trickler.send(bytes([next(request)]))
            except OSError:
                return True
            return False

        wait_until(trickle, timeout=metrics.CONNECTION_SECONDS + 3, interval=0.5,
                   message="a trickling client is never hung up")
        wait_until(lambda: all(map(_hung_up, clients)), timeout=3,
                   message="idle connections are not hung up after the timeout")
        wait_until(lambda: server_threads() == 0, timeout=3)
        assert "sersyncpy_watches" in _scrape(port)
    finally:
        for sock in clients:
            sock.close()


def test_stop_hangs_up_open_connections_and_ends_their_threads(server):
    baseline = set(threading.enumerate())
    clients = [_connect(server.address[1]) for _ in range(5)]
    try:
        wait_until(lambda: len(set(threading.enumerate()) - baseline) == 5, timeout=5)
        server.stop()  # well before the connections' timeout
        assert all(map(_hung_up, clients))
        assert not [thread for thread in threading.enumerate()
                    if thread not in baseline and thread.is_alive()]
    finally:
        for sock in clients:
            sock.close()
