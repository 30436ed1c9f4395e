"""The refreshCDN plugin: asks the ChinaCache CDN API to refresh the URL of each change, built
from <sendurl base> and <regexurl> exactly as sersync built it, then URL-encoded. Replies go
to the log (sersync wrote errorlog.txt in its working directory); the password never does.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Optional
from urllib.parse import quote

import requests

from sersyncpy.config import CdnSettings
from sersyncpy.plugins import DeliveryError, Notice

logger = logging.getLogger(__name__)

TIMEOUT = (5.0, 15.0)  # seconds to connect, to read the reply
RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))


def refresh_target(settings: CdnSettings, notice: Notice) -> Optional[str]:
    """The public URL to refresh, or None when regex="true" and `match` is not found.

    regex="true": base + the first group of the first match in the absolute path + the rest
    of the path after the match. Otherwise base + the path below the plugin's watch (in
    sync mode, for a path outside it: below the watched root)."""
    path = notice.path
    if settings.regex:
        found = re.search(settings.match, path, re.DOTALL)  # "." takes a newline, as in Boost
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
    """The part of a reply sersync kept: from "whatsup" to the end of that line, or all."""
    start = text.find("whatsup")
    if start == -1:
        return " ".join(text.split())[:300]
    end = text.find("\n", start)
    return text[start:end if end != -1 else None].strip()


class CdnPlugin:
    name = "refreshCDN"

    def __init__(self, settings: CdnSettings):
        self.settings = settings
        self._session = requests.Session()
        # urllib3 logs each request line, password included, at DEBUG: keep it quiet.
        logging.getLogger("urllib3").setLevel(logging.WARNING)

    def deliver(self, notices: list[Notice]) -> None:
        for done, notice in enumerate(notices):
            url = request_url(self.settings, notice)
            if url is None:
                logger.debug("refreshCDN: %r does not match regexurl, nothing to refresh",
                             notice.path)
                continue
            target = refresh_target(self.settings, notice)
            try:
                reply = self._session.request(self.settings.method, url, timeout=TIMEOUT,
                                              allow_redirects=False)
            except requests.RequestException as exc:
                raise DeliveryError(done, self._redact(f"{self.settings.domain}: {exc}")) \
                    from None
            said = whatsup(reply.text) if reply.text else ""
            if reply.status_code in RETRY_STATUS:
                raise DeliveryError(done, f"{self.settings.domain}: HTTP {reply.status_code}")
            level = logging.INFO if reply.ok else logging.ERROR
            logger.log(level, "refreshCDN: %s %s: HTTP %d%s", "dirs" if notice.is_dir
                       else "urls", target, reply.status_code,
                       self._redact(f" {said}") if said else "")

    def _redact(self, text: str) -> str:
        for secret in {self.settings.password, quote(self.settings.password, safe="")}:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self._session.close()
