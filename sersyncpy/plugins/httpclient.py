"""One HTTP request at a time with a total deadline and a capped reply, for the http and
refreshCDN plugins, on http.client: requests could not bound a request's whole time (each read
restarted its timeout) and read whole replies. What logs may show of a URL is `Url.shown`.
"""

from __future__ import annotations

import base64
import errno
import http.client
import io
import logging
import math
import os
import select
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Optional, TypeVar, Union
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from sersyncpy import __version__

logger = logging.getLogger(__name__)

DEADLINE_SECONDS = 30.0  # a CDN or hook answers in well under a second; 30 s is a dead one
REPLY_CAP = 64 * 1024  # refreshCDN needs one `whatsup` line, http an error excerpt
SLOW_SECONDS = 10.0  # a delivery in progress this long is named once, at WARNING
USER_AGENT = f"sersyncpy/{__version__}"
# Kept out of reply excerpts; a shorter query value is more likely a flag than a secret.
SECRET_MIN_LENGTH = 4

T = TypeVar("T")
Buffer = Union[bytearray, memoryview]


@dataclass(frozen=True)
class Limits:
    """How long one request may take, how much of a reply is read, and when a delivery
    still in progress is named at WARNING (seconds, bytes, seconds)."""

    deadline: float = DEADLINE_SECONDS  # one request: connect, TLS, send, headers and body
    cap: int = REPLY_CAP  # bytes of a reply's body read; the rest is never read
    slow: float = SLOW_SECONDS


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Url:
    """A parsed http:// or https:// URL and what may be logged of it."""

    scheme: str
    host: str  # as connected to: an IPv6 address without brackets
    port: int
    target: str = field(repr=False)  # the request target: path and query, percent-encoded
    host_header: str
    shown: str  # scheme://host[:port]/path: no user, password, query or fragment
    authorization: Optional[str] = field(default=None, repr=False)  # from user:password@
    secrets: tuple[str, ...] = field(default=(), repr=False)  # the password, query values

    @classmethod
    def parse(cls, url: str) -> Url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http:// or https:// URL")
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        try:  # an internationalised name as DNS, TLS and the Host header want it
            host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("not a valid host name") from None
        named = f"[{host}]" if ":" in host else host
        # As requests did: reserved characters stay, anything unsafe is percent-encoded.
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
        if parts.query:
            target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=?~")
        authorization = _basic_auth(parts.username, parts.password)
        return cls(
            scheme=parts.scheme, host=host, port=port, target=target,
            host_header=named if port == default else f"{named}:{port}",
            shown=f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}",
            authorization=authorization,
            secrets=_secrets(parts.password, parts.query, authorization),
        )

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


def _basic_auth(username: Optional[str], password: Optional[str]) -> Optional[str]:
    """user:password@ as basic auth, when requests sent it: a password is given (maybe empty
    with a user name); latin-1 as requests encoded it, UTF-8 for what latin-1 cannot."""
    if password is None or not (username or password):
        return None
    pair = f"{unquote(username or '')}:{unquote(password)}"
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _secrets(password: Optional[str], query: str,
             authorization: Optional[str]) -> tuple[str, ...]:
    found = {password, unquote(password)} if password else set()
    if authorization:
        found.add(authorization.partition(" ")[2])  # the password, base64-encoded
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        value = value if equals else name
        if len(value) >= SECRET_MIN_LENGTH:
            found |= {value, unquote_plus(value)}
    return tuple(sorted(found, key=len, reverse=True))  # longest first: no part left behind


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes  # at most Limits.cap bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class HttpError(Exception):
    """No reply: connection, TLS or protocol error, or the deadline. `reason` names no URL."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Clock:
    """One request's deadline, and when the slow warning is due (monotonic seconds)."""

    deadline: float
    warn_at: float
    on_slow: Callable[[_Clock], None]
    phase: str = "connecting"

    def slice(self) -> float:
        """How long the next wait may take: to the deadline, or to the moment the slow
        warning is due (said here, once). Raises socket.timeout at the deadline."""
        now = time.monotonic()
        if now >= self.warn_at:
            self.warn_at = math.inf
            self.on_slow(self)
        if now >= self.deadline:
            raise socket.timeout("deadline")
        return min(self.deadline, self.warn_at) - now


class _DeadlineSocket:
    """What http.client sees as its socket: every wait on the real one (plain or TLS) ends
    by the request's deadline, however slowly the server trickles. Closing is the Client's:
    http.client closes a connection that a reply ends while the reply is still being read."""

    def __init__(self, sock: socket.socket, clock: _Clock):
        self.sock = sock
        self.clock = clock

    def call(self, op: Callable[..., T], *args: object) -> T:
        while True:
            self.sock.settimeout(self.clock.slice())
            try:
                return op(*args)
            except socket.timeout:
                continue  # the slow warning's time, or the deadline: slice() tells which

    def recv_into(self, buffer: Buffer) -> int:
        return self.call(self.sock.recv_into, buffer)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[self.call(self.sock.send, view):]

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        return io.BufferedReader(_Reader(self))

    def close(self) -> None:
        pass


class _Reader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket):
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:
        return self._sock.recv_into(buffer)


@dataclass
class _Open:
    key: tuple[str, str, int]
    conn: http.client.HTTPConnection
    sock: _DeadlineSocket


class Client:
    """Sends one plugin's requests, one at a time, keeping the connection for the next one
    when the server allows (as requests' Session did)."""

    def __init__(self, name: str, limits: Limits = DEFAULT_LIMITS):
        self.name = name  # the plugin's, for the slow warning
        self.limits = limits
        self._open: Optional[_Open] = None
        self._tls: Optional[ssl.SSLContext] = None
        self._since: Optional[float] = None  # when the delivery under way began
        self._slow_said = False

    @contextmanager
    def delivery(self) -> Iterator[None]:
        """One delivery of one or more requests. The slow warning is said when one has been
        in progress for Limits.slow, and not again until a delivery has gone through."""
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None
        self._slow_said = False

    def request(self, method: str, url: Url, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None) -> Reply:
        """The status and at most Limits.cap bytes of the body, all within Limits.deadline,
        or HttpError."""
        now = time.monotonic()
        began = now if self._since is None else self._since
        warn_at = math.inf if self._slow_said else began + self.limits.slow
        clock = _Clock(now + self.limits.deadline, warn_at,
                       lambda late: self._say_slow(url, late))
        try:
            return self._exchange(method, url, body, headers or {}, clock)
        except socket.timeout:
            self._drop()
            raise HttpError(f"no complete reply within {self.limits.deadline:g} s "
                            f"({clock.phase})") from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise HttpError(f"{_reason(exc)} ({clock.phase})") from None

    def _exchange(self, method: str, url: Url, body: Optional[bytes],
                  headers: dict[str, str], clock: _Clock) -> Reply:
        conn = self._connection(url, clock)
        sent = {"Host": url.host_header, "User-Agent": USER_AGENT, "Accept": "*/*", **headers}
        if url.authorization:
            sent["Authorization"] = url.authorization
        clock.phase = "sending the request"
        conn.request(method, url.target, body=body, headers=sent)
        clock.phase = "waiting for the reply"
        response = conn.getresponse()
        clock.phase = "reading the reply"
        data = response.read(self.limits.cap)
        # Kept only when the whole reply was read: what is left of a longer one is never read.
        if not response.isclosed() or response.will_close:
            self._drop()
        return Reply(response.status, data)

    def _connection(self, url: Url, clock: _Clock) -> http.client.HTTPConnection:
        if self._open is not None and (self._open.key != url.key or
                                       _peer_spoke(self._open.sock.sock)):
            self._drop()
        if self._open is None:
            sock = _DeadlineSocket(_connect(url.host, url.port, clock), clock)
            conn = http.client.HTTPConnection(url.host, url.port)
            conn.sock = sock  # type: ignore[assignment]  # never its own connect()
            self._open = _Open(url.key, conn, sock)
            if url.scheme == "https":
                clock.phase = "in the TLS handshake"
                tls = self._context().wrap_socket(sock.sock, server_hostname=url.host,
                                                  do_handshake_on_connect=False)
                sock.sock = tls
                sock.call(tls.do_handshake)
        self._open.sock.clock = clock
        return self._open.conn

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _say_slow(self, url: Url, clock: _Clock) -> None:
        self._slow_said = True
        began = self._since if self._since is not None else clock.deadline - self.limits.deadline
        logger.warning("%s: a delivery to %s has been in progress for %.0f s, %s (each request "
                       "gives up after %g s)", self.name, url.shown, time.monotonic() - began,
                       clock.phase, self.limits.deadline)

    def _drop(self) -> None:
        if self._open is not None:
            self._open.sock.sock.close()
            self._open = None

    def close(self) -> None:
        self._drop()


def _connect(host: str, port: int, clock: _Clock) -> socket.socket:
    """A TCP connection to the first address of `host` that takes it, by the deadline.
    Name resolution is the resolver's (resolv.conf's timeout), not bounded here."""
    last: Optional[OSError] = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port,
                                                              type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            _connect_one(sock, address, clock)
        except socket.timeout:
            sock.close()
            raise  # the deadline: no time left for another address
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or OSError(errno.EADDRNOTAVAIL, "no address to connect to")


def _connect_one(sock: socket.socket, address: tuple, clock: _Clock) -> None:
    # Not a blocking connect: one with a timeout cannot be resumed to say the slow warning.
    sock.setblocking(False)
    err = sock.connect_ex(address)
    if err == errno.EINPROGRESS:
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        while not poller.poll(math.ceil(clock.slice() * 1000)):
            pass
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def _peer_spoke(sock: socket.socket) -> bool:
    """Whether a kept connection has something no request asked for: the server closed it
    (or sent junk), so it must not carry the next request."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _reason(exc: Exception) -> str:
    """What went wrong, in words that carry nothing of the request (no URL, no header)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"not a valid HTTP reply ({type(exc).__name__})"
