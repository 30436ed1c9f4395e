"""The refreshCDN plugin: asks the ChinaCache CDN API to refresh the URL of each change, built
from <sendurl base> and <regexurl> exactly as sersync built it, then URL-encoded. Replies go
to the log (sersync wrote errorlog.txt in its working directory); the request's query, with
the user and password, never does.
"""

from __future__ import annotations

import logging
import os
from typing import Optional
from urllib.parse import quote

from sersyncpy.convert import pattern
from sersyncpy.plugins import DeliveryError, Notice
from sersyncpy.plugins.httpclient import DEFAULT_LIMITS, Client, HttpError, Limits, Url, redact
from sersyncpy.plugins.settings import CdnSettings

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))


def refresh_target(settings: CdnSettings, notice: Notice) -> Optional[str]:
    """The public URL to refresh, or None when regex="true" and `match` is not found.

    regex="true": base + the first group of the first match in the absolute path + the rest
    of the path after the match. Otherwise base + the path below the plugin's watch (in
    sync mode, for a path outside it: below the watched root)."""
    path = notice.path
    if settings.regex:
        found = pattern(settings.match).search(path)
        if found is None:
            return None
        group = (found.group(1) or "") if found.re.groups else ""
        return settings.base + group + path[found.end():]
    watch = settings.watch.rstrip("/")
    if path == watch or path.startswith(watch + "/"):
        return settings.base + path[len(watch):]
    return settings.base + ("/" + notice.rel if notice.rel else "")


def request_url(settings: CdnSettings, notice: Notice) -> Optional[str]:
    """The API request: /index.jsp?user=..&pswd=..&ok=ok&urls=URL, or &dirs=URL/ for a
    directory. sersync did not encode; we percent-encode all but ':' and '/'."""
    target = refresh_target(settings, notice)
    if target is None:
        return None
    field, value = ("dirs", target + "/") if notice.is_dir else ("urls", target)
    query = (f"user={quote(settings.username, safe='')}&pswd={quote(settings.password, safe='')}"
             f"&ok=ok&{field}={quote(os.fsencode(value), safe=':/')}")
    return f"http://{settings.domain}:{settings.port}/index.jsp?{query}"


def whatsup(text: str) -> str:
    """The part of a reply sersync kept: from "whatsup" to the end of that line, or all;
    300 characters at most either way, for one log line."""
    start = text.find("whatsup")
    if start == -1:
        return " ".join(text.split())[:300]
    end = text.find("\n", start)
    return text[start:end if end != -1 else None].strip()[:300]


class CdnPlugin:
    name = "refreshCDN"
    notices_inside = False

    def __init__(self, settings: CdnSettings, limits: Limits = DEFAULT_LIMITS):
        self.settings = settings
        self._client = Client(self.name, limits)
        # A reply may quote the request: the password, raw and as the query spells it.
        spellings = {settings.password, quote(settings.password, safe="")}
        self._secrets = tuple(sorted(spellings, key=len, reverse=True))

    def deliver(self, notices: list[Notice]) -> None:
        with self._client.delivery():
            for done, notice in enumerate(notices):
                self._refresh(done, notice)

    def _refresh(self, done: int, notice: Notice) -> None:
        url = request_url(self.settings, notice)
        if url is None:
            logger.debug("refreshCDN: %r does not match regexurl, nothing to refresh",
                         notice.path)
            return
        api = Url.parse(url)
        what = f"{'dirs' if notice.is_dir else 'urls'} {refresh_target(self.settings, notice)}"
        try:
            reply = self._client.request(self.settings.method, api)
        except HttpError as exc:
            raise DeliveryError(done, f"{api.shown}: {exc.reason}, refreshing {what}") from None
        if reply.status in RETRY_STATUS:
            raise DeliveryError(done, f"{api.shown}: HTTP {reply.status}, refreshing {what}")
        said = whatsup(redact(reply.text, self._secrets)) if reply.body else ""
        level = logging.INFO if reply.status < 400 else logging.ERROR
        logger.log(level, "refreshCDN: %s: HTTP %d%s", what, reply.status,
                   f" {said}" if said else "")

    def close(self) -> None:
        self._client.close()
