"""Real local servers that record what the plugins send: a TCP listener and an HTTP server
(http.server in a thread), and two bad HTTP servers: one that trickles its reply, one whose
reply is huge. Each binds 127.0.0.1 on a free port and is stopped by stop()."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Union
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
    peer: int = 0  # the client's port: requests on one kept-alive connection share it


Answer = Union[bytes, Callable[[Request], bytes]]


class HttpRecorder:
    """An http.server in a thread recording method, path, query, headers and body of every
    request, answering `status` with `reply` (both may be changed while it runs; `reply` may
    be a function of the request). `answers`, while it is not empty, gives the next requests'
    (status, reply) instead, in turn; `statuses` records the status of each answer, in
    the order they were given. A connection idle for `idle` seconds is closed;
    `closed` counts the connections closed. With `tls` (certificate and key files) it speaks
    https. stop() also cuts the clients' kept-alive connections, so a stopped server answers
    nobody."""

    def __init__(self, port: int = 0, status: int = 200, reply: Answer = b"whatsup: succeed\r\n",
                 answers: Optional[list[tuple[int, bytes]]] = None,
                 idle: Optional[float] = None, tls: Optional[tuple[str, str]] = None):
        self.requests: list[Request] = []
        self.statuses: list[int] = []
        self.status = status
        self.reply = reply
        self.answers = list(answers or [])
        self.closed = 0
        self._open: set[socket.socket] = set()  # connections being served (keep-alive)
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle

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
                request = Request(self.command, target.path, target.query, body,
                                  dict(self.headers), self.client_address[1])
                recorder.requests.append(request)
                with recorder._lock:
                    status, reply = (recorder.answers.pop(0) if recorder.answers
                                     else (recorder.status, recorder.reply))
                    recorder.statuses.append(status)
                data = reply(request) if callable(reply) else reply
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = _handle

            def log_message(self, *_args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
                super().shutdown_request(request)
                with recorder._lock:
                    recorder.closed += 1

        self._server = Server(("127.0.0.1", port), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
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


class _BadHttpServer:
    """Accepts connections on 127.0.0.1 and gives each to `answer(conn)` in its own thread,
    once the request's head has arrived. Counts the connections, and those it is done with
    (`sent` is final for them); stop() ends every thread."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self.finished = 0
        self.sent = 0  # reply bytes the kernel took, over all connections
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, name="bad http server",
                                        daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                self.answer(conn)
        except OSError:
            pass  # the client gave up: what these servers are for
        finally:
            with self._lock:
                self.finished += 1

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)

    def answer(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopping.set()
        self._sock.close()
        self._thread.join()
        for t in self._threads:
            t.join()


class TrickleServer(_BadHttpServer):
    """Answers every request one byte every `interval` seconds, for at most `seconds` (then
    it closes): the status line and headers when `part` is "head", else a body whose
    Content-Length promises far more than ever comes."""

    def __init__(self, part: str = "head", interval: float = 0.1, seconds: float = 8.0):
        self.part, self.interval, self.seconds = part, interval, seconds
        super().__init__()

    def answer(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"
        if self.part != "head":
            self.send(conn, head)
        trickled = head if self.part == "head" else b"x" * 1000000
        give_up = time.monotonic() + self.seconds
        for i in range(len(trickled)):
            if time.monotonic() >= give_up or self._stopping.wait(self.interval):
                return
            self.send(conn, trickled[i:i + 1])


class HugeReplyServer(_BadHttpServer):
    """Answers every request 200 with a body of `size` bytes made up as it is sent (never
    held whole), with a Content-Length, or chunked when `chunked`."""

    BLOCK = b"whatsup: " + b"x" * (65536 - 10) + b"\n"

    def __init__(self, size: int, chunked: bool = False):
        self.size, self.chunked = size, chunked
        super().__init__()

    def answer(self, conn: socket.socket) -> None:
        framing = (b"Transfer-Encoding: chunked" if self.chunked
                   else b"Content-Length: %d" % self.size)
        self.send(conn, b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n")
        left = self.size
        while left and not self._stopping.is_set():
            block = self.BLOCK[:left]
            self.send(conn, b"%x\r\n%s\r\n" % (len(block), block) if self.chunked else block)
            left -= len(block)
        if self.chunked:
            self.send(conn, b"0\r\n\r\n")
