"""The socket plugin: tells a TCP listener about each change. format="sersync" (the default)
is sersync's wire format, one connection per change carrying the absolute path and nothing
else; format="json" keeps one connection open and sends one JSON line per change.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket

from sersyncpy.plugins import DeliveryError, Notice, record
from sersyncpy.plugins.settings import SocketSettings

logger = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0


def sersync_payload(notice: Notice) -> bytes:
    """The absolute path's bytes: no kind, no terminator, as sersync sent it."""
    return os.fsencode(notice.path)


def json_line(notice: Notice) -> bytes:
    """One JSON object (plugins.record) and a newline."""
    return json.dumps(record(notice), ensure_ascii=False).encode("utf-8") + b"\n"


class SocketPlugin:
    name = "socket"
    notices_inside = True

    def __init__(self, settings: SocketSettings):
        self.settings = settings
        self._address = (settings.ip, settings.port)
        self._conn: socket.socket | None = None  # format="json" only

    def deliver(self, notices: list[Notice]) -> None:
        if self.settings.format == "json":
            self._send_lines(notices)
            return
        for done, notice in enumerate(notices):
            try:
                with socket.create_connection(self._address, CONNECT_SECONDS) as conn:
                    conn.sendall(sersync_payload(notice))
            except OSError as exc:
                raise DeliveryError(done, f"{self._where()}: {_reason(exc)}") from None

    def _send_lines(self, notices: list[Notice]) -> None:
        # At least once: lines sent just before the listener went away are sent again.
        try:
            conn = self._connected()
            conn.sendall(b"".join(map(json_line, notices)))
        except OSError as exc:
            self.close()
            raise DeliveryError(0, f"{self._where()}: {_reason(exc)}") from None

    def _connected(self) -> socket.socket:
        if self._conn is not None and _peer_closed(self._conn):
            self.close()
        if self._conn is None:
            self._conn = socket.create_connection(self._address, CONNECT_SECONDS)
            self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            logger.info("socket: connected to %s", self._where())
        return self._conn

    def _where(self) -> str:
        return f"{self.settings.ip}:{self.settings.port}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _peer_closed(conn: socket.socket) -> bool:
    """Whether the listener has closed its end (what it may have sent is discarded)."""
    while select.select([conn], [], [], 0)[0]:
        try:
            if not conn.recv(65536, socket.MSG_DONTWAIT):
                return True
        except BlockingIOError:
            return False
        except OSError:
            return True
    return False


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
