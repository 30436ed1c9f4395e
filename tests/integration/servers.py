"""Real local servers that record what the plugins send: a TCP listener and an HTTP server
(http.server in a thread). Each binds 127.0.0.1 on a free port and is stopped by stop()."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import urlsplit


@dataclass
class Connection:
    """What one TCP connection carried, whole, once the peer closed it (or up to now)."""

    data: bytes = b""
    closed: bool = False
    opened_at: float = field(default_factory=time.monotonic)


class TcpRecorder:
    """Accepts connections and records every byte each one carries.

    on_data(bytes) is called from the server's threads as data arrives (for checks made at
    the moment a notice arrives). `port` may be given to listen again on the same port after
    stop() (a listener restart)."""

    def __init__(self, port: int = 0, on_data: Optional[Callable[[bytes], None]] = None):
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.connections: list[Connection] = []
        self.on_data = on_data
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="tcp recorder", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            record = Connection()
            with self._lock:
                self.connections.append(record)
                self._open.append(conn)
            t = threading.Thread(target=self._read, args=(conn, record), daemon=True)
            self._threads.append(t)
            t.start()

    def _read(self, conn: socket.socket, record: Connection) -> None:
        conn.settimeout(0.1)
        with conn:
            while not self._stopping.is_set():
                try:
                    data = conn.recv(65536)
                except (TimeoutError, socket.timeout):
                    continue
                except OSError:
                    break
                if not data:
                    break
                with self._lock:
                    record.data += data
                if self.on_data:
                    self.on_data(data)
        record.closed = True

    def messages(self) -> list[bytes]:
        """The data of every closed connection (sersync's format: one path each)."""
        with self._lock:
            return [c.data for c in self.connections if c.closed]

    def stream(self) -> bytes:
        """Everything received, connections in order (the JSON-lines format)."""
        with self._lock:
            return b"".join(c.data for c in self.connections)

    def stop(self) -> None:
        self._stopping.set()
        self._sock.close()
        self._thread.join()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t in self._threads:
            t.join()


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # the raw request target's path, still percent-encoded
    query: str  # the raw query string, still percent-encoded
    body: bytes
    headers: dict


class HttpRecorder:
    """An http.server in a thread recording method, path, query, headers and body of every
    request, answering `status` with `reply` (both may be changed while it runs). stop() also
    cuts the clients' kept-alive connections, so a stopped server answers nobody."""

    def __init__(self, port: int = 0, status: int = 200, reply: bytes = b"whatsup: succeed\r\n"):
        self.requests: list[Request] = []
        self.status = status
        self.reply = reply
        self._open: set[socket.socket] = set()  # connections being served (keep-alive)
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with recorder._lock:
                    recorder._open.add(self.connection)

            def finish(self) -> None:
                with recorder._lock:
                    recorder._open.discard(self.connection)
                super().finish()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = urlsplit(self.path)
                recorder.requests.append(Request(self.command, target.path, target.query,
                                                 body, dict(self.headers)))
                self.send_response(recorder.status)
                self.send_header("Content-Length", str(len(recorder.reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(recorder.reply)

            do_GET = do_HEAD = do_POST = _handle

            def log_message(self, *_args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        # Without this a client's kept-alive connection would still be served after stop().
        with self._lock:
            open_now = list(self._open)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
