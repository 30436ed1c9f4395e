"""Prometheus metrics at http://HOSTIP:PORT/metrics when <metrics start="true"> asks (127.0.0.1
unless hostip says otherwise): the replicator's snapshot, the status file's document, rendered
at each scrape; the small HTTP server bounds its connections.
"""

from __future__ import annotations

import io
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Callable, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from sersyncpy.statusfile import FileStatus, PluginStatus, RemoteStatus, RootStatus, Status

logger = logging.getLogger(__name__)

DEFAULT_HOSTIP = "127.0.0.1"  # sersync's <host> named no address; we expose nothing by default
# A scrape sends its request at once and is answered in milliseconds; a connection still open
# after this many seconds (idle, or trickling its request) is hung up.
CONNECTION_SECONDS = 5.0
# Connections served at once, one thread each; beyond it, new ones are closed at once. A few
# Prometheus servers and a curl need far fewer.
MAX_CONNECTIONS = 64
REFUSAL_LOG_SECONDS = 60.0  # at most one WARNING about refused connections this often


# Snapshot: where everything stands now (replicator.Replicator.snapshot).
Snapshot = Callable[[], Status]

_REMOTE_COUNTERS = (  # (metric name, help, RemoteStatus field)
    ("events", "changes offered to the remote's queue, before collapsing", "events"),
    ("events_collapsed", "changes made redundant by later ones (not pushed apart)",
     "events_collapsed"),
    ("batches", "batches pushed", "batches"),
    ("paths", "paths pushed", "paths"),
    ("files_sent", "regular files rsync transferred", "files_sent"),
    ("bytes_sent", "bytes rsync sent, protocol included", "bytes_sent"),
    ("rsync_runs", "rsync processes run", "rsync_runs"),
    ("failed_batches", "batches that failed (and were retried)", "failed_batches"),
    ("pending_collapses", "times the pending paths passed <failLog maxPending> and became "
     "one full sync of the root", "pending_collapses"),
)
_REMOTE_GAUGES = (
    ("pending", "changes not yet on the remote (queue depth)", "pending"),
    ("lag_seconds", "age of the oldest change not yet on the remote (0 when current)",
     "lag_seconds"),
    ("consecutive_failures", "failed batches in a row", "consecutive_failures"),
    ("last_success_timestamp_seconds", "when a batch last reached the remote",
     "last_success"),
)
_ROOT_GAUGES = (
    ("watches", "directories watched", "watches"),
    ("unwatched_directories", "directories that could not be watched (inotify limit): "
     "resynced whole periodically", "unwatched"),
    ("unreadable_paths", "paths and directories that could not be read (permissions): not "
     "replicated", "unreadable"),
)


def _remote_families(remotes: tuple[RemoteStatus, ...]) -> Iterator[Metric]:
    labels = ["root", "remote"]
    for kind, table in ((CounterMetricFamily, _REMOTE_COUNTERS),
                        (GaugeMetricFamily, _REMOTE_GAUGES)):
        for name, doc, attribute in table:
            family = kind(f"sersyncpy_{name}", doc, labels=labels)
            for remote in remotes:
                family.add_metric([remote.root, remote.remote],
                                  getattr(remote, attribute) or 0)
            yield family


def _root_families(roots: tuple[RootStatus, ...]) -> Iterator[Metric]:
    for name, doc, attribute in _ROOT_GAUGES:
        family = GaugeMetricFamily(f"sersyncpy_{name}", doc, labels=["root"])
        for root in roots:
            family.add_metric([root.path], getattr(root, attribute))
        yield family


def _file_families(files: dict[str, Optional[FileStatus]]) -> Iterator[Metric]:
    """Our own files (the fail log, the status file): whether their writes work."""
    failing = GaugeMetricFamily("sersyncpy_state_file_failing", "1 while the last write of one "
                                "of sersyncpy's own files failed (full disk, permissions)",
                                labels=["file"])
    failures = CounterMetricFamily("sersyncpy_state_file_write_failures", "failed writes of one "
                                   "of sersyncpy's own files", labels=["file"])
    for name, each in files.items():
        if each is not None:
            failing.add_metric([name], 1 if each.error else 0)
            failures.add_metric([name], each.failures)
    yield failing
    yield failures


def _plugin_families(plugin: PluginStatus) -> Iterator[Metric]:
    labels = [plugin.name]
    for name, doc, value in (
            ("delivered", "changes passed to the plugin", plugin.delivered),
            ("dropped", "changes the plugin was never told of", plugin.dropped)):
        family = CounterMetricFamily(f"sersyncpy_plugin_{name}", doc, labels=["plugin"])
        family.add_metric(labels, value)
        yield family
    queued = GaugeMetricFamily("sersyncpy_plugin_queued", "changes waiting for the plugin or "
                               "for every remote", labels=["plugin"])
    queued.add_metric(labels, plugin.queued + plugin.waiting_for_remotes)
    yield queued


class Collector:
    """Renders the replicator's snapshot at scrape time: the same document as the status
    file, so the two never disagree."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        doc = self.snapshot()
        yield from _remote_families(doc.remotes)
        yield from _root_families(doc.roots)
        yield from _file_families({"fail_log": doc.fail_log, "status": doc.status_file})
        yield CounterMetricFamily("sersyncpy_inotify_overflows", "watcher queue overflows, "
                                  "inotify or fanotify (each resynced every root)",
                                  value=doc.overflows)
        watcher = GaugeMetricFamily("sersyncpy_watcher", "the watcher in use (1): inotify or "
                                    "fanotify", labels=["watcher"])
        watcher.add_metric([doc.watcher or "inotify"], 1)
        yield watcher
        if doc.plugin is not None:
            yield from _plugin_families(doc.plugin)


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

    def __init__(self, hostip: str, port: int, snapshot: Snapshot,
                 timeout: float = CONNECTION_SECONDS, max_connections: int = MAX_CONNECTIONS):
        self.address = (hostip or DEFAULT_HOSTIP, port)
        self.snapshot = snapshot
        self.timeout, self.max_connections = timeout, max_connections
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if not self.address[1]:
            return
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector(self.snapshot))
        host, port = self.address
        try:
            # As prometheus_client: the first address the name resolves to (IPv4 or IPv6).
            family, _, _, _, sockaddr = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            server = _Server(family, (str(sockaddr[0]), port), self.timeout,
                             self.max_connections)
        except OSError as exc:
            # Metrics are for people watching; replication goes on without them.
            logger.error("metrics: cannot listen on %s:%d (<metrics hostip port>): %s; no "
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
