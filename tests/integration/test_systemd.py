"""The real sersyncpy command as systemd runs it (Type=notify): READY=1 once it replicates,
WATCHDOG=1 every WATCHDOG_USEC/2, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM;
and no timestamp of its own when stderr is the journal."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import stop_process, wait_until

from integration.conftest import confxml, read_status, same_tree, write


class Manager:
    """The systemd side of NOTIFY_SOCKET: a datagram socket in tmp_path, read by polling."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.received: list[tuple[float, list[str]]] = []  # (monotonic time, lines)

    def drain(self) -> list[list[str]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return [lines for _, lines in self.received]
            self.received.append((time.monotonic(), data.decode().split("\n")))

    def with_line(self, line: str) -> list[tuple[float, list[str]]]:
        self.drain()
        return [(at, lines) for at, lines in self.received if line in lines]

    def wait_for(self, line: str, count: int = 1, timeout: float = 30.0) -> list:
        return wait_until(lambda: len(self.with_line(line)) >= count and self.with_line(line),
                          timeout=timeout, message=f"{count} x {line!r} from sersyncpy "
                          f"(got {[lines for _, lines in self.received]})")

    def close(self) -> None:
        self.sock.close()


class Service:
    """`python -m sersyncpy -o conf` started as systemd would: NOTIFY_SOCKET and the rest
    in its environment, stderr in a file."""

    def __init__(self, home: Path, config_text: str):
        self.home = home
        self.config = home / "confxml.xml"
        self.config.write_text(config_text.replace("/tmp/rsync_fail_log.sh",
                                                   str(home / "fail_log.sh")))
        self.log_path = home / "sersyncpy.log"
        self.manager = Manager(home / "notify")
        self.proc: subprocess.Popen | None = None

    def start(self, journal: bool = False, **env: str) -> Service:
        environ = dict(os.environ, NOTIFY_SOCKET=str(self.manager.path), **env)
        for name in ("WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
            if name not in env:
                environ.pop(name, None)  # the test runner's own, if it runs under systemd
        with open(self.log_path, "wb") as log:
            if journal:  # as journald hands over a stream: its dev:inode in JOURNAL_STREAM
                st = os.fstat(log.fileno())
                environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sersyncpy", "-o", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.home, env=environ,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self, count: int = 1) -> list:
        """Wait for the count-th READY=1; fails at once if the process exits instead."""
        def seen():
            assert self.proc.poll() is None, f"sersyncpy exited early:\n{self.log()}"
            return self.manager.with_line("READY=1")[count - 1:]
        return wait_until(seen, timeout=30, message="READY=1 from sersyncpy")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.manager.close()


@pytest.fixture
def service(tmp_path, src, daemon):
    """A factory: service(**env) -> a started Service replicating src to daemon's "backup"."""
    started: list[Service] = []

    def factory(journal: bool = False, **env: str) -> Service:
        home = tmp_path / f"svc{len(started)}"
        home.mkdir()
        svc = Service(home, confxml([(src, [(daemon, "backup")])]))
        started.append(svc)
        return svc.start(journal, **env)

    yield factory
    for svc in started:
        svc.stop()


def test_ready_after_replicating_then_stopping_on_sigterm(service, src, daemon):
    svc = service()
    (_, lines), = svc.ready()
    # READY=1 is sent after the watches are set: the status file already says so.
    doc = read_status(svc.home / "fail_log.status.json")
    assert doc is not None and doc["pid"] == svc.proc.pid and doc["running"], doc
    assert doc["roots"][0]["watches"] == (1 if doc["watcher"] == "inotify" else 0), doc
    status = [line for line in lines if line.startswith("STATUS=")]
    assert status and "replicating to 1 remote" in status[0], lines
    # Ready means replicating: a file written now arrives.
    write(src / "after-ready.txt", b"hello")
    same_tree(src, daemon.modules["backup"])

    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(timeout=60) == 0, svc.log()
    svc.manager.wait_for("STOPPING=1", timeout=5)
    messages = svc.manager.drain()
    assert "STOPPING=1" in messages[-1], messages
    assert sum("READY=1" in m for m in messages) == 1, messages


def test_watchdog_pings_every_half_interval(service):
    svc = service(WATCHDOG_USEC="1000000")
    (ready_at, _), = svc.ready()
    # 0.5 s apart: at least three within about 3 s of READY=1.
    pings = svc.manager.wait_for("WATCHDOG=1", count=3, timeout=3.5)
    assert pings[2][0] - ready_at <= 3.5


def test_no_watchdog_without_watchdog_usec(service):
    svc = service()
    svc.ready()
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(timeout=60) == 0, svc.log()
    assert not svc.manager.with_line("WATCHDOG=1"), svc.manager.drain()


def test_sighup_reloading_then_ready_again(service):
    svc = service()
    svc.ready()
    svc.proc.send_signal(signal.SIGHUP)
    (reload_at, _), = svc.manager.wait_for("RELOADING=1", timeout=15)
    second_ready_at = svc.ready(count=2)[0][0]
    assert second_ready_at >= reload_at
    assert svc.proc.poll() is None, svc.log()


def test_journal_stream_drops_our_timestamp(service):
    """When stderr is the journal (JOURNAL_STREAM matches fd 2), journald adds the time."""
    svc = service(journal=True)
    svc.ready()
    # Log text kept: the line's format on stderr is what this tests.
    line = next(line for line in svc.log().splitlines() if "replicating to" in line)
    assert not re.match(r"\d{4}-\d\d-\d\d", line), line
