"""Prometheus metrics at http://HOSTIP:PORT/metrics, from sersync's unused <host hostip port>
(off when it is absent or its port is 0; 127.0.0.1 when hostip is empty). Values are read from
the running pipeline at each scrape; the small HTTP server bounds its connections.
"""

from __future__ import annotations

import io
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

if TYPE_CHECKING:  # only for the annotations: importing these costs start-up time
    from sersyncpy.config import Config
    from sersyncpy.diskstate import Unreadable
    from sersyncpy.faillog import FailLogWriter, WriteHealth
    from sersyncpy.lane import Lane
    from sersyncpy.plugins.gate import Gate
    from sersyncpy.plugins.runner import Runner
    from sersyncpy.watcher import Watcher

logger = logging.getLogger(__name__)

DEFAULT_HOSTIP = "127.0.0.1"  # sersync's <host> named no address; we expose nothing by default
# A scrape sends its request at once and is answered in milliseconds; a connection still open
# after this many seconds (idle, or trickling its request) is hung up.
CONNECTION_SECONDS = 5.0
# Connections served at once, one thread each; beyond it, new ones are closed at once. A few
# Prometheus servers and a curl need far fewer.
MAX_CONNECTIONS = 64
REFUSAL_LOG_SECONDS = 60.0  # at most one WARNING about refused connections this often


class Pipeline(Protocol):
    """What Collector reads of the running replicator.Replicator."""

    config: Config
    watcher: Watcher
    runner: Optional[Runner]
    gate: Optional[Gate]
    unreadable: list[Unreadable]  # per root
    fail_log: FailLogWriter
    status_health: WriteHealth

    def all_lanes(self) -> list[Lane]: ...


def _lane_families(lanes: list[Lane]) -> list[Metric]:
    labels = ["root", "remote"]
    counters = {
        "events": ("changes offered to the remote's queue, before collapsing", "events_in"),
        "batches": ("batches pushed", "batches"),
        "paths": ("paths pushed", "paths"),
        "files_sent": ("regular files rsync transferred", "files_sent"),
        "bytes_sent": ("bytes rsync sent, protocol included", "bytes_sent"),
        "rsync_runs": ("rsync processes run", "rsync_runs"),
        "failed_batches": ("batches that failed (and were retried)", "failed_batches"),
        "pending_collapses": ("times the pending paths passed <failLog maxPending> and became "
                              "one full sync of the root", "collapses"),
    }
    families = {
        name: CounterMetricFamily(f"sersyncpy_{name}", doc, labels=labels)
        for name, (doc, _) in counters.items()
    }
    collapsed = CounterMetricFamily("sersyncpy_events_collapsed",
                                    "changes made redundant by later ones (not pushed apart)",
                                    labels=labels)
    gauges = {
        "pending": GaugeMetricFamily("sersyncpy_pending", "changes not yet on the remote "
                                     "(queue depth)", labels=labels),
        "lag": GaugeMetricFamily("sersyncpy_lag_seconds", "age of the oldest change not yet on "
                                 "the remote (0 when current)", labels=labels),
        "failures": GaugeMetricFamily("sersyncpy_consecutive_failures", "failed batches in a "
                                      "row", labels=labels),
        "last_success": GaugeMetricFamily("sersyncpy_last_success_timestamp_seconds",
                                          "when a batch last reached the remote",
                                          labels=labels),
    }
    for lane in lanes:
        key = [lane.root, lane.target.label]
        stats = lane.stats
        for name, (_, field) in counters.items():
            families[name].add_metric(key, getattr(stats, field))
        pending, lag = lane.lag()
        collapsed.add_metric(key, max(0, stats.events_in - stats.events_out - pending))
        gauges["pending"].add_metric(key, pending)
        gauges["lag"].add_metric(key, lag)
        gauges["failures"].add_metric(key, stats.failures)
        gauges["last_success"].add_metric(key, stats.last_success or 0)
    return [*families.values(), collapsed, *gauges.values()]


def _write_families(health: dict[str, WriteHealth]) -> list[Metric]:
    """Our own files (the fail log, the status file): whether their writes work."""
    failing = GaugeMetricFamily("sersyncpy_state_file_failing", "1 while the last write of one "
                                "of sersyncpy's own files failed (full disk, permissions)",
                                labels=["file"])
    failures = CounterMetricFamily("sersyncpy_state_file_write_failures", "failed writes of one "
                                   "of sersyncpy's own files", labels=["file"])
    for name, h in health.items():
        failing.add_metric([name], 1 if h.error else 0)
        failures.add_metric([name], h.failures)
    return [failing, failures]


class Collector:
    """Reads a Replicator (daemon.py) at scrape time."""

    def __init__(self, replicator: Pipeline):
        self.replicator = replicator

    def collect(self) -> Iterator[Metric]:
        r = self.replicator
        yield from _lane_families(r.all_lanes())
        watches = GaugeMetricFamily("sersyncpy_watches", "directories watched", labels=["root"])
        unwatched = GaugeMetricFamily("sersyncpy_unwatched_directories", "directories that "
                                      "could not be watched (inotify limit): resynced whole "
                                      "periodically", labels=["root"])
        unreadable = GaugeMetricFamily("sersyncpy_unreadable_paths", "paths and directories "
                                       "that could not be read (permissions): not replicated",
                                       labels=["root"])
        for lp, (count, missing), paths in zip(r.config.localpaths, r.watcher.counts(),
                                               r.unreadable):
            watches.add_metric([lp.watch], count)
            unwatched.add_metric([lp.watch], missing)
            unreadable.add_metric([lp.watch], paths.count())
        yield watches
        yield unwatched
        yield unreadable
        yield from _write_families({"fail_log": r.fail_log.health, "status": r.status_health})
        yield CounterMetricFamily("sersyncpy_inotify_overflows", "inotify queue overflows "
                                  "(each resynced every root)", value=r.watcher.overflows)
        if r.runner is not None:
            s = r.runner.stats
            labels = [r.runner.plugin.name]
            for name, doc, value in (
                    ("delivered", "changes passed to the plugin", s.delivered),
                    ("dropped", "changes the plugin was never told of", s.dropped)):
                family = CounterMetricFamily(f"sersyncpy_plugin_{name}", doc,
                                             labels=["plugin"])
                family.add_metric(labels, value)
                yield family
            queued = GaugeMetricFamily("sersyncpy_plugin_queued", "changes waiting for the "
                                       "plugin or for every remote", labels=["plugin"])
            waiting = r.gate.waiting() if r.gate is not None else 0
            queued.add_metric(labels, r.runner.pending() + waiting)
            yield queued


class _Handler(WSGIRequestHandler):
    """One request per connection (HTTP/1.0), each socket operation under a timeout."""

    def setup(self) -> None:
        if isinstance(self.server, _Server):
            self.timeout = self.server.seconds  # StreamRequestHandler.setup applies it
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per scrape would drown the log

    def get_stderr(self) -> _LogStream:
        return _LogStream()  # wsgiref prints a failed request's traceback there


class _LogStream(io.StringIO):
    """wsgiref's error stream, to the log in one record (a hang-up is not printed there)."""

    def flush(self) -> None:
        text = self.getvalue().strip()
        if text:
            logger.warning("metrics: a request failed: %s", text)
        self.seek(0)
        self.truncate()


class _Server(WSGIServer):
    """A thread per connection as prometheus_client's server, but at most `limit` of them,
    and each hung up `seconds` after it was accepted, whatever it is doing."""

    # listen()'s backlog: socketserver's 5 drops a burst of connections' SYNs, and each
    # dropped one waits a second to retry. Waiting there costs no thread.
    request_queue_size = 128

    def __init__(self, family: socket.AddressFamily, address: tuple[str, int], seconds: float,
                 limit: int):
        self.address_family = family  # read by TCPServer.__init__ to make the socket
        self.seconds, self.limit = seconds, limit
        self._lock = threading.Lock()
        self._open: dict[socket.socket, tuple[float, threading.Thread]] = {}
        self._refused, self._refusals_logged = 0, -REFUSAL_LOG_SECONDS  # the first is logged
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's would resolve the address's FQDN: a DNS wait at start, for nothing.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()

    def process_request(self, request: socket.socket, client_address: object) -> None:
        thread = threading.Thread(target=self._serve, args=(request, client_address),
                                  name="metrics connection", daemon=True)
        with self._lock:
            full = len(self._open) >= self.limit
            if not full:
                self._open[request] = (time.monotonic() + self.seconds, thread)
        if full:
            self.shutdown_request(request)
            self._log_refusal()
            return
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: drop this one, keep serving
            with self._lock:
                del self._open[request]
            self.shutdown_request(request)

    def _serve(self, request: socket.socket, client_address: object) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._lock:  # not hung up by service_actions once closed (see there)
                del self._open[request]
            self.shutdown_request(request)

    def service_actions(self) -> None:
        """Called by serve_forever at least every poll interval: hang up late connections.
        A timeout per recv() alone would let a client trickling a byte at a time stay."""
        now = time.monotonic()
        with self._lock:  # held so no socket is closed (and its number reused) meanwhile
            for request, (deadline, _) in self._open.items():
                if deadline <= now:
                    _hang_up(request)

    def close_connections(self) -> None:
        """Hang up every connection and wait (a little) for their threads."""
        with self._lock:
            for request in self._open:
                _hang_up(request)
            threads = [thread for _, thread in self._open.values()]
        deadline = time.monotonic() + self.seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: object, client_address: object) -> None:
        # socketserver's prints a traceback on stderr: a timeout or a hang-up is routine.
        logger.debug("metrics: request from %s failed", client_address, exc_info=True)

    def _log_refusal(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refusals_logged >= REFUSAL_LOG_SECONDS:
            logger.warning("metrics: %d connection(s) refused: %d already open (the most "
                           "served at once)", self._refused, self.limit)
            self._refused, self._refusals_logged = 0, now


def _hang_up(request: socket.socket) -> None:
    """Wake the thread blocked on this socket: its recv() or send() returns or fails."""
    try:
        request.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the client is already gone


class MetricsServer:
    """The /metrics endpoint, or nothing when <host> does not ask for one."""

    def __init__(self, hostip: str, port: int, replicator: Pipeline,
                 timeout: float = CONNECTION_SECONDS, max_connections: int = MAX_CONNECTIONS):
        self.address = (hostip or DEFAULT_HOSTIP, port)
        self.replicator = replicator
        self.timeout, self.max_connections = timeout, max_connections
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if not self.address[1]:
            return
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector(self.replicator))
        host, port = self.address
        try:
            # As prometheus_client: the first address the name resolves to (IPv4 or IPv6).
            family, _, _, _, sockaddr = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            server = _Server(family, (str(sockaddr[0]), port), self.timeout,
                             self.max_connections)
        except OSError as exc:
            # Metrics are for people watching; replication goes on without them.
            logger.error("metrics: cannot listen on %s:%d (<host hostip port>): %s; no "
                         "metrics served", host, port, exc.strerror or exc)
            return
        server.set_app(make_wsgi_app(registry))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": min(0.5, self.timeout / 4)}, name="metrics", daemon=True)
        self._thread.start()
        logger.info("metrics at http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()  # serve_forever returns: nothing new is accepted
        self._thread.join()
        self._server.close_connections()
        self._server.server_close()
        self._server = self._thread = None
