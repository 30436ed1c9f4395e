"""Each plugin's settings, as frozen dataclasses, and the reader of each from its top-level
<plugin> section of confxml.xml. Read only for the plugin in use (config.plugin_settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union
from urllib.parse import urlsplit, urlunsplit

from sersyncpy import convert
from sersyncpy.configxml import (
    Element,
    child,
    elements,
    guarded,
    required_child,
    start,
    value,
)

DEFAULT_PLUGIN_QUEUE = 10000  # notices waiting for a plugin; more are dropped and counted
DEFAULT_PLUGIN_RETRY_SECONDS = 300.0  # a notice not delivered by then is dropped
DEFAULT_COMMAND_TIMEOUT = 600.0  # seconds a command plugin's program may run


@dataclass(frozen=True)
class Delivery:
    """sersyncpy's additions on a top-level <plugin>: how much may wait, and for how long."""

    queue: int = DEFAULT_PLUGIN_QUEUE
    retry_seconds: float = DEFAULT_PLUGIN_RETRY_SECONDS


@dataclass(frozen=True)
class CommandSettings:
    prefix: tuple[str, ...]  # argv before the path (shlex-split)
    suffix: tuple[str, ...]  # argv after the path
    ignore_error: bool
    includes: tuple[str, ...]  # regexes matched in full on the absolute path; () = every path
    timeout: float
    delivery: Delivery = Delivery()
    watch: Optional[str] = None  # command has no localpath of its own: <sersync>'s are used


@dataclass(frozen=True)
class SocketSettings:
    watch: str  # for -m socket only; in sync mode the <sersync> localpaths are watched
    ip: str
    port: int
    format: str  # "sersync": one connection per change carrying the path; "json": one line each
    delivery: Delivery = Delivery()


@dataclass(frozen=True)
class CdnSettings:
    watch: str  # its path is what the URL replaces (regex="false")
    domain: str
    port: int
    username: str
    password: str = field(repr=False)
    base: str = ""
    regex: bool = False
    match: str = ""
    method: str = "HEAD"  # sersync's request; method="GET" for APIs that want it
    delivery: Delivery = Delivery()


@dataclass(frozen=True)
class HttpSettings:
    watch: str
    url: str  # with <deshost port> applied when the url names none
    format: str  # "form": one form POST per change, as sersync's code; "json": one per batch
    delivery: Delivery = Delivery()


PluginSettings = Union[CommandSettings, SocketSettings, CdnSettings, HttpSettings]


# --- readers: (the <plugin> element, whether -m runs it alone) -> its settings ---------------
# A plugin run alone (-m) watches its own <localpath>, which must then exist; in sync mode the
# <sersync> localpaths are watched and the plugin's is only a path.


def _delivery(plugin: Element) -> Delivery:
    return Delivery(
        queue=value(plugin, "queue", convert.positive, DEFAULT_PLUGIN_QUEUE),
        retry_seconds=value(plugin, "retrySeconds", convert.seconds,
                            DEFAULT_PLUGIN_RETRY_SECONDS),
    )


def _plugin_watch(plugin: Element, standalone: bool) -> tuple[Element, str]:
    """(the plugin's first <localpath>, its watch): sersync reads only the first."""
    localpath = required_child(plugin, "localpath")
    return localpath, value(localpath, "watch", convert.directory if standalone else convert.path)


@guarded
def read_command(plugin: Element, _standalone: bool) -> CommandSettings:
    param = required_child(plugin, "param")
    filter_ = child(plugin, "filter")
    includes: tuple[str, ...] = ()
    if start(filter_):
        includes = tuple(value(one, "expression", convert.regex) for one in elements(filter_))
    return CommandSettings(
        prefix=value(param, "prefix", convert.program),
        suffix=value(param, "suffix", convert.argv, ()),
        ignore_error=value(param, "ignoreError", convert.boolean, False),
        includes=includes,
        timeout=value(param, "timeout", convert.seconds, DEFAULT_COMMAND_TIMEOUT),
        delivery=_delivery(plugin),
    )


@guarded
def read_socket(plugin: Element, standalone: bool) -> SocketSettings:
    localpath, watch = _plugin_watch(plugin, standalone)
    deshost = required_child(localpath, "deshost")
    return SocketSettings(
        watch=watch,
        ip=value(deshost, "ip", convert.nonempty),
        port=value(deshost, "port", convert.port),
        format=value(deshost, "format", convert.choice("sersync", "json"), "sersync"),
        delivery=_delivery(plugin),
    )


@guarded
def read_cdn(plugin: Element, standalone: bool) -> CdnSettings:
    localpath, watch = _plugin_watch(plugin, standalone)
    info = required_child(localpath, "cdninfo")
    regexurl = required_child(localpath, "regexurl")
    regex = value(regexurl, "regex", convert.boolean)
    return CdnSettings(
        watch=watch,
        domain=value(info, "domainname", convert.nonempty),
        port=value(info, "port", convert.port),
        username=value(info, "username", convert.nonempty),
        password=value(info, "passwd", convert.nonempty),
        method=value(info, "method", convert.choice("HEAD", "GET"), "HEAD"),
        base=value(required_child(localpath, "sendurl"), "base", convert.nonempty),
        regex=regex,
        match=value(regexurl, "match", convert.regex if regex else convert.nonempty),
        delivery=_delivery(plugin),
    )


@guarded
def read_http(plugin: Element, standalone: bool) -> HttpSettings:
    localpath, watch = _plugin_watch(plugin, standalone)
    deshost = required_child(localpath, "deshost")
    url = value(deshost, "url", convert.http_url)
    port = value(deshost, "port", convert.port_or_zero, 0)
    parts = urlsplit(url)
    if port and parts.port is None:
        # sersync's code reads port but never uses it; a url without one gets it here.
        url = urlunsplit(parts._replace(netloc=f"{parts.netloc.rstrip(':')}:{port}"))
    return HttpSettings(
        watch=watch,
        url=url,
        format=value(deshost, "format", convert.choice("form", "json"), "form"),
        delivery=_delivery(plugin),
    )
