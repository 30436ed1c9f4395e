"""The status file: one typed document (Status) that the replicator writes every couple of
seconds, that `sersyncpy status` reads back (every field checked: it is input from disk)
and that the metrics render. One shape for all three, so none reads the pipeline its own way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar, Union, get_args, get_origin, get_type_hints

from sersyncpy.faillog import WriteHealth, write_atomically
from sersyncpy.push import LaneStats

STATUS_SECONDS = 2.0  # how often the running process rewrites the file
FORMAT = 1


def default_path(fail_log: str) -> str:
    """Beside the fail log, which every instance has its own of:
    /var/lib/sersyncpy/rsync_fail_log.sh -> /var/lib/sersyncpy/rsync_fail_log.status.json."""
    return os.path.splitext(fail_log)[0] + ".status.json"


@dataclass(frozen=True)
class RemoteStatus:
    """One lane: a remote of a root. The fields with a default came later than format 1's
    first files, which are read all the same."""

    root: str
    remote: str  # its label, as the log names it
    pending: int  # changes not yet on the remote
    lag_seconds: float  # the age of the oldest of them; 0 when current
    last_success: Optional[float]  # time.time() of the last batch that reached it
    consecutive_failures: int
    files_sent: int
    bytes_sent: int
    failed_batches: int = 0
    last_error: str = ""  # while failing
    rsync_runs: int = 0
    batches: int = 0
    last_full_sync: Optional[float] = None
    paused: bool = False  # its root is gone: nothing is pushed until it is back
    pending_collapses: int = 0  # times its pending paths passed <failLog maxPending>
    events: int = 0  # changes offered to it, before collapsing
    events_collapsed: int = 0  # changes made redundant by later ones
    paths: int = 0  # paths pushed


@dataclass(frozen=True)
class RootStatus:
    path: str
    watches: int  # directories watched
    unwatched: int  # directories that could not be watched (the inotify limit)
    last_full_sync: Optional[float]  # when every remote of the root last had one
    unreadable: int = 0  # paths and directories we may not read: not replicated


@dataclass(frozen=True)
class PluginStatus:
    name: str
    queued: int
    waiting_for_remotes: int
    delivered: int
    dropped: int
    failures: int = 0


@dataclass(frozen=True)
class FileStatus:
    """How the writes of one of our own files go (the fail log, the status file)."""

    path: str
    error: str = ""  # why the last write failed; "" when it worked
    failing_since: Optional[float] = None
    failures: int = 0  # failed writes since start


@dataclass(frozen=True)
class Status:
    """The whole document."""

    format: int
    running: bool
    updated: float  # time.time() when written
    interval: float  # seconds between writes
    remotes: tuple[RemoteStatus, ...]
    roots: tuple[RootStatus, ...]
    plugin: Optional[PluginStatus]
    pid: int = 0
    config: str = ""
    started: float = 0.0
    fail_log: Optional[FileStatus] = None
    status_file: Optional[FileStatus] = None
    overflows: int = 0  # watcher queue overflows (each resynced every root)
    watcher: str = ""  # "inotify" (a watch per directory) or "fanotify" (a mark per file system)


def remote_status(root: str, label: str, stats: LaneStats, pending: int, lag: float,
                  paused: bool) -> RemoteStatus:
    return RemoteStatus(
        root=root, remote=label, pending=pending, lag_seconds=round(lag, 3),
        last_success=stats.last_success, consecutive_failures=stats.failures,
        files_sent=stats.files_sent, bytes_sent=stats.bytes_sent,
        failed_batches=stats.failed_batches,
        last_error=stats.last_error if stats.failures else "",
        rsync_runs=stats.rsync_runs, batches=stats.batches,
        last_full_sync=stats.last_full_sync, paused=paused,
        pending_collapses=stats.collapses, events=stats.events_in,
        events_collapsed=max(0, stats.events_in - stats.events_out - pending),
        paths=stats.paths,
    )


def root_status(path: str, watches: int, unwatched: int, unreadable: int,
                remotes: tuple[RemoteStatus, ...]) -> RootStatus:
    """last_full_sync: when every remote of the root had one (None: one never had)."""
    fulls = [r.last_full_sync for r in remotes if r.root == path]
    last = None if not fulls or None in fulls else min(f for f in fulls if f is not None)
    return RootStatus(path=path, watches=watches, unwatched=unwatched, last_full_sync=last,
                      unreadable=unreadable)


def file_status(health: WriteHealth) -> FileStatus:
    return FileStatus(health.path, health.error, health.failing_since, health.failures)


def render(doc: Status) -> bytes:
    """The file's bytes: JSON, one field per line, names as the dataclasses have them."""
    return (json.dumps(dataclasses.asdict(doc), indent=1, ensure_ascii=False)
            + "\n").encode("utf-8")


def write(path: str, doc: Status) -> None:
    """Atomically: a reader never sees half a file."""
    write_atomically(path, render(doc), mode=0o644)


class Malformed(ValueError):
    """The status file is not one to believe: not sersyncpy's document, or not trusted."""


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


# What a field of each type must hold, and how a message names it.
_SCALARS: dict[object, tuple[Callable[[object], bool], str]] = {
    str: (lambda value: isinstance(value, str), "a string"),
    bool: (lambda value: isinstance(value, bool), "true or false"),
    int: (_is_count, "a whole number of zero or more"),
    float: (_is_number, "a finite number"),
}

_Record = TypeVar("_Record")


def _record(cls: type[_Record], raw: object, where: str = "") -> _Record:
    """An instance of dataclass `cls` from a JSON object holding (at least) its fields;
    `where` names the object in messages ("remotes[0]"; "" for the document)."""
    if not isinstance(raw, dict):
        raise Malformed(f"{where or 'the document'} is {_shown(raw)}, not an object")
    values = {}
    hints = get_type_hints(cls)
    for each in dataclasses.fields(cls):  # type: ignore[arg-type]
        if each.name not in raw:
            if each.default is dataclasses.MISSING:  # a field every version has written
                raise Malformed(f"{where or 'the document'} has no \"{each.name}\"")
            continue
        values[each.name] = _field(hints[each.name], raw[each.name],
                                   f"{where}.{each.name}" if where else each.name)
    return cls(**values)


def _field(kind: object, value: object, where: str) -> object:
    if dataclasses.is_dataclass(kind):
        return _record(kind, value, where)  # type: ignore[arg-type]
    if get_origin(kind) is tuple:  # tuple[X, ...]: a JSON list of X
        if not isinstance(value, list):
            raise Malformed(f"{where} is {_shown(value)}, not a list")
        return tuple(_field(get_args(kind)[0], item, f"{where}[{index}]")
                     for index, item in enumerate(value))
    if get_origin(kind) is Union:  # Optional[X]: X or null
        return None if value is None else _field(get_args(kind)[0], value, where)
    check, expected = _SCALARS[kind]
    if not check(value):
        raise Malformed(f"{where} is {_shown(value)}, not {expected}")
    return float(value) if kind is float else value  # type: ignore[arg-type]


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


def parse(raw: object) -> Status:
    """The fields `sersyncpy status` reads, each of its type (counts not negative, numbers
    finite); raises Malformed naming the first that is not. Unknown fields are ignored."""
    doc = _record(Status, raw)
    if not 1 <= doc.format <= FORMAT:
        raise Malformed(f"format {doc.format}, where this sersyncpy reads {FORMAT}")
    return doc


