"""The http plugin, which sersync 2.5 wrote but never shipped: a form POST per change of
watchroot, isdir, inotifyPath and mask, as its code sends them; format="json" sends one JSON
POST per batch instead. Logs show the url's scheme, host, port and path, never more.
"""

from __future__ import annotations

import json
import logging
import os
from urllib.parse import urlencode

from sersyncpy.plugins import DeliveryError, Notice, record
from sersyncpy.plugins.httpclient import DEFAULT_LIMITS, Client, HttpError, Limits, Url, redact
from sersyncpy.plugins.settings import HttpSettings

logger = logging.getLogger(__name__)

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
    notices_inside = True

    def __init__(self, settings: HttpSettings, limits: Limits = DEFAULT_LIMITS):
        self.settings = settings
        self._url = Url.parse(settings.url)
        self._client = Client(self.name, limits)

    def deliver(self, notices: list[Notice]) -> None:
        with self._client.delivery():
            if self.settings.format == "json":
                self._post(json_body(notices), "application/json", 0, len(notices))
                return
            for done, notice in enumerate(notices):
                self._post(form_body(notice), FORM, done, 1)

    def _post(self, body: bytes, content_type: str, done: int, count: int) -> None:
        shown = self._url.shown
        try:
            reply = self._client.request("POST", self._url, body, {"Content-Type": content_type})
        except HttpError as exc:
            raise DeliveryError(done, f"{shown}: {exc.reason}") from None
        if reply.status in RETRY_STATUS:
            raise DeliveryError(done, f"{shown}: HTTP {reply.status}")
        if reply.status >= 300:
            # The server refused these changes; sending them again would not help. Nor is a
            # redirect followed: a hook's url is the config's to fix (requests followed one,
            # turning the POST into a GET without the changes after a 301, 302 or 303).
            excerpt = " ".join(redact(reply.text, self._url.secrets).split())[:300]
            logger.error("http: %s refused %d change(s): HTTP %d %s", shown, count,
                         reply.status, excerpt)

    def close(self) -> None:
        self._client.close()
