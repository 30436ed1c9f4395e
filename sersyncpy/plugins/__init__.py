"""Plugins (command, socket, refreshCDN, http): what they are told about a change (Notice) and
what each offers (Plugin). Which plugins there are is registry.py's; each runs in its own
thread (runner.py), off the replication path.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import NamedTuple, Optional, Protocol

from sersyncpy.events import DELETE, RENAME, SUBTREE, UPDATE, Event
from sersyncpy.plugins.settings import PluginSettings
from sersyncpy.rules import Excluded

# inotify mask bits, for the http plugin's `mask` field (sersync posted the raw mask).
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_ISDIR = 0x40000000


class Notice(NamedTuple):
    """One change as a plugin sees it."""

    kind: str  # "update" or "delete"
    path: str  # absolute (any bytes, surrogateescape, like every path here)
    root: str  # the watch root it is under
    rel: str  # path relative to root
    is_dir: bool
    mask: int  # the inotify mask sersync would have passed on
    time: float  # when it was seen (seconds since the epoch)


def record(notice: Notice) -> dict:
    """A notice as JSON: kind, path, is_dir, time. A path that is not UTF-8 also comes as
    "path_b64", its exact bytes ("path" then has U+FFFD where bytes were not UTF-8)."""
    raw = os.fsencode(notice.path)
    text = raw.decode("utf-8", "replace")
    out = {"kind": notice.kind, "path": text, "is_dir": notice.is_dir, "time": notice.time}
    if text.encode("utf-8") != raw:
        out["path_b64"] = base64.b64encode(raw).decode("ascii")
    return out


class DeliveryError(Exception):
    """The first `done` notices of a delivery arrived; the rest are to be tried again."""

    def __init__(self, done: int, reason: str):
        super().__init__(reason)
        self.done = done
        self.reason = reason


class Plugin(Protocol):
    name: str
    # Told of each file inside a directory that arrives whole; refreshCDN is not, as one
    # dirs= request refreshes everything below it.
    notices_inside: bool

    def deliver(self, notices: list[Notice]) -> None:
        """Deliver in order, or raise DeliveryError saying how many arrived."""

    def close(self) -> None: ...


def _notice(kind: str, root: str, rel: str, is_dir: bool, mask: int, now: float) -> Notice:
    path = os.path.join(root, rel) if rel else root
    return Notice(kind, path, root, rel, is_dir, mask | (IN_ISDIR if is_dir else 0), now)


def notices_for(root: str, events: list[Event], now: float, inside: bool = False,
                excluded: Optional[Excluded] = None) -> list[Notice]:
    """What the plugins hear of these events. A rename is a delete and an update, as
    sersync saw it; full resyncs (overflow, -r) name no change, so they give none. With
    `inside`, a directory that arrives whole (moved in, or new) also gives one notice per
    file and directory in it, but those the <filter> regexes (`excluded`) leave out."""
    out: list[Notice] = []
    for e in events:
        if e.kind == UPDATE:
            mask = IN_ATTRIB if e.is_dir else IN_CLOSE_WRITE
            out.append(_notice("update", root, e.path, e.is_dir, mask, now))
        elif e.kind == SUBTREE:
            out.append(_notice("update", root, e.path, True, IN_CREATE, now))
        elif e.kind == DELETE and e.path:
            out.append(_notice("delete", root, e.path, e.is_dir, IN_DELETE, now))
        elif e.kind == RENAME:
            if e.src is not None:
                out.append(_notice("delete", root, e.src, e.is_dir, IN_MOVED_FROM, now))
            out.append(_notice("update", root, e.path, e.is_dir, IN_MOVED_TO, now))
        if inside and e.kind in (SUBTREE, RENAME) and e.is_dir:
            out += _inside(root, e.path, now, excluded)
    return out


def _inside(root: str, top: str, now: float, excluded: Optional[Excluded]) -> list[Notice]:
    """One notice per file and directory below `top` as it is on disk now (sersync told
    its plugins of the directory alone: `mv staging/app www/` ran no command for app's
    .php files). Symlinks are not followed; names are sorted, so the order is stable."""
    out: list[Notice] = []
    stack = _entries(root, top, excluded)
    while stack:  # depth first, in name order
        rel, is_dir, mask = stack.pop()
        out.append(_notice("update", root, rel, is_dir, mask, now))
        if is_dir:
            stack += _entries(root, rel, excluded)
    return out


def _entries(root: str, directory: str,
             excluded: Optional[Excluded]) -> list[tuple[str, bool, int]]:
    """(rel, is a directory, mask) of what is in `directory`, last name first."""
    try:
        with os.scandir(os.path.join(root, directory)) as scan:
            entries = sorted(scan, key=lambda entry: entry.name, reverse=True)
    except OSError:
        return []  # gone again, or unreadable: its own events say so
    found = []
    for entry in entries:
        rel = f"{directory}/{entry.name}"
        is_dir = entry.is_dir(follow_symlinks=False)
        if excluded is None or not excluded(rel, is_dir):
            mask = IN_CREATE if is_dir or entry.is_symlink() else IN_CLOSE_WRITE
            found.append((rel, is_dir, mask))
    return found


class _Localpath(Protocol):
    @property
    def watch(self) -> str: ...


class Localpaths(Protocol):
    """What standalone_roots reads of a config.Config: a Protocol, as config imports the
    plugin names (registry.py) and the plugins do not import config."""

    @property
    def localpaths(self) -> Sequence[_Localpath]: ...


def standalone_roots(cfg: Localpaths, settings: PluginSettings) -> list[str]:
    """What -m NAME watches: the plugin's own <localpath>, or for command (which has none)
    the <sersync> localpaths, as sersync -m did."""
    watch: Optional[str] = getattr(settings, "watch", None)
    return [watch] if watch else [lp.watch for lp in cfg.localpaths]
