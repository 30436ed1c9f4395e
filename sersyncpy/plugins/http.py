"""The http plugin, which sersync 2.5 wrote but never shipped: a form POST per change of
watchroot, isdir, inotifyPath and mask, as its code sends them; format="json" sends one JSON
POST per batch instead.
"""

from __future__ import annotations

import json
import logging
import os
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests

from sersyncpy.config import HttpSettings
from sersyncpy.plugins import DeliveryError, Notice, record

logger = logging.getLogger(__name__)

TIMEOUT = (5.0, 15.0)
RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
FORM = "application/x-www-form-urlencoded"


def form_body(notice: Notice) -> bytes:
    """watchroot=..&isdir=0|1&inotifyPath=..&mask=.. (URL-encoded; sersync's code was not)."""
    return urlencode([
        ("watchroot", os.fsencode(notice.root)),
        ("isdir", "1" if notice.is_dir else "0"),
        ("inotifyPath", os.fsencode(notice.path)),
        ("mask", str(notice.mask)),
    ]).encode("ascii")


def json_body(notices: list[Notice]) -> bytes:
    """{"changes": [{kind, path, is_dir, time, watchroot, mask}, ...]}."""
    changes = []
    for notice in notices:
        change = record(notice)
        change["watchroot"] = os.fsencode(notice.root).decode("utf-8", "replace")
        change["mask"] = notice.mask
        changes.append(change)
    return json.dumps({"changes": changes}, ensure_ascii=False).encode("utf-8")


class HttpPlugin:
    name = "http"

    def __init__(self, settings: HttpSettings):
        self.settings = settings
        self._session = requests.Session()
        parts = urlsplit(settings.url)
        # What the log shows: never a user:password@ the url may carry.
        self._shown = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def deliver(self, notices: list[Notice]) -> None:
        if self.settings.format == "json":
            self._post(json_body(notices), "application/json", 0, len(notices))
            return
        for done, notice in enumerate(notices):
            self._post(form_body(notice), FORM, done, 1)

    def _post(self, body: bytes, content_type: str, done: int, count: int) -> None:
        try:
            reply = self._session.post(self.settings.url, data=body, timeout=TIMEOUT,
                                       headers={"Content-Type": content_type})
        except requests.RequestException as exc:
            raise DeliveryError(done, self._redact(f"{self._shown}: {exc}")) from None
        if reply.status_code in RETRY_STATUS:
            raise DeliveryError(done, f"{self._shown}: HTTP {reply.status_code}")
        if not reply.ok:
            # The server refused these changes; sending them again would not help.
            logger.error("http: %s refused %d change(s): HTTP %d %s", self._shown,
                         count, reply.status_code, " ".join(reply.text.split())[:300])

    def _redact(self, text: str) -> str:
        secret = urlsplit(self.settings.url).password
        return text.replace(secret, "***") if secret else text

    def close(self) -> None:
        self._session.close()
