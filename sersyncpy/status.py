"""The status file (JSON, rewritten every few seconds even when idle) and `sersyncpy status`,
which prints it and exits non-zero when a remote lags, so a failover script or a monitoring
check can ask whether the replicas are current.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    NoReturn,
    Optional,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from sersyncpy import statefiles
from sersyncpy.errors import UsageError
from sersyncpy.faillog import WriteHealth, write_atomically

STATUS_SECONDS = 2.0  # how often the running process rewrites the file
DEFAULT_MAX_LAG = 60.0  # seconds; `sersyncpy status` exits 1 beyond it
FORMAT = 1

# `sersyncpy status` exit codes (as monitoring plugins read them: 0 OK, 1 warning, 3 unknown).
CURRENT, LAGGING, UNKNOWN = 0, 1, 3


def default_path(fail_log: str) -> str:
    """Beside the fail log, which every instance has its own of: /tmp/rsync_fail_log.sh ->
    /tmp/rsync_fail_log.status.json."""
    return os.path.splitext(fail_log)[0] + ".status.json"


def remote_entry(root: str, label: str, stats: Any, pending: int, lag: float,
                 paused: bool) -> dict:
    return {
        "root": root,
        "remote": label,
        "pending": pending,
        "lag_seconds": round(lag, 3),
        "last_success": stats.last_success,
        "consecutive_failures": stats.failures,
        "failed_batches": stats.failed_batches,
        "last_error": stats.last_error if stats.failures else "",
        "files_sent": stats.files_sent,
        "bytes_sent": stats.bytes_sent,
        "rsync_runs": stats.rsync_runs,
        "batches": stats.batches,
        "last_full_sync": stats.last_full_sync,
        "paused": paused,
        # Times the pending paths passed <failLog maxPending> and became one full sync.
        "pending_collapses": stats.collapses,
    }


def root_entry(path: str, watched: int, unwatched: int, unreadable: int,
               remotes: list[dict]) -> dict:
    fulls = [r["last_full_sync"] for r in remotes if r["root"] == path]
    return {
        "path": path,
        "watches": watched,
        "unwatched": unwatched,
        "unreadable": unreadable,  # paths and directories we may not read: not replicated
        # When every remote of the root had its last full sync (null: one never had one).
        "last_full_sync": None if not fulls or None in fulls else min(fulls),
    }


def write_entry(health: WriteHealth) -> dict:
    """How the writes of one of our own files go (the fail log): "" error when they work."""
    return {"path": health.path, "error": health.error,
            "failing_since": health.failing_since, "failures": health.failures}


def document(config: str, started: float, roots: list[dict], remotes: list[dict],
             plugin: Optional[dict], fail_log: dict, running: bool = True) -> dict:
    return {
        "format": FORMAT,
        "pid": os.getpid(),
        "config": config,
        "running": running,
        "started": started,
        "updated": time.time(),
        "interval": STATUS_SECONDS,
        "roots": roots,
        "remotes": remotes,
        "plugin": plugin,
        "fail_log": fail_log,
    }


def write(path: str, doc: dict) -> None:
    """Atomically: a reader never sees half a file."""
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    write_atomically(path, text.encode("utf-8"), mode=0o644)


# --- sersyncpy status ------------------------------------------------------------------------

# The most `sersyncpy status` reads: some 9,000 remotes' entries, where a real file has a few.
MAX_STATUS_BYTES = 4 << 20


class Malformed(ValueError):
    """The status file is not one to believe: not sersyncpy's document, or not trusted."""


@dataclass(frozen=True)
class RemoteStatus:
    """The fields of a "remotes" entry that `sersyncpy status` reads (others are ignored)."""

    remote: str
    root: str
    pending: int
    lag_seconds: float
    last_success: Optional[float]
    consecutive_failures: int
    files_sent: int
    bytes_sent: int


@dataclass(frozen=True)
class RootStatus:
    path: str
    watches: int
    unwatched: int
    last_full_sync: Optional[float]


@dataclass(frozen=True)
class PluginStatus:
    name: str
    queued: int
    waiting_for_remotes: int
    delivered: int
    dropped: int


@dataclass(frozen=True)
class Status:
    """A status document as read back, every field checked (see parse)."""

    format: int
    running: bool
    updated: float
    interval: float
    remotes: tuple[RemoteStatus, ...]
    roots: tuple[RootStatus, ...]
    plugin: Optional[PluginStatus]


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
    for name, kind in get_type_hints(cls).items():
        if name not in raw:
            raise Malformed(f"{where or 'the document'} has no \"{name}\"")
        values[name] = _field(kind, raw[name], f"{where}.{name}" if where else name)
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


def verdict(doc: Optional[Status], max_lag: float, now: float) -> tuple[int, str]:
    """(exit code, one line saying why) for a status document (None: no file)."""
    if doc is None:
        return UNKNOWN, "no status file: is sersyncpy running with this config?"
    if not doc.running:
        return UNKNOWN, "sersyncpy has stopped"
    age = now - doc.updated
    window = max(3 * doc.interval, 10.0)
    if age > window:
        return UNKNOWN, f"the status file is {age:.0f} s old: sersyncpy is not running or hung"
    if age < -window:  # a clock set back since: its age says nothing
        return UNKNOWN, f"the status file is dated {-age:.0f} s ahead: is the clock right?"
    late = [r for r in doc.remotes if r.lag_seconds > max_lag]
    if late:
        names = ", ".join(f"{r.remote} ({r.lag_seconds:.0f} s)" for r in late)
        return LAGGING, f"{len(late)} remote(s) lag more than {max_lag:g} s: {names}"
    return CURRENT, "every remote is current"


def _when(timestamp: Optional[float], now: float) -> str:
    if timestamp is None:
        return "never"
    return f"{max(0.0, now - timestamp):.0f}s ago"


def table(doc: Status, now: float) -> str:
    rows = [("REMOTE", "ROOT", "PENDING", "LAG", "LAST OK", "FAILS", "FILES", "BYTES")]
    for r in doc.remotes:
        rows.append((r.remote, r.root, str(r.pending), f"{r.lag_seconds:.1f}s",
                     _when(r.last_success, now), str(r.consecutive_failures),
                     str(r.files_sent), str(r.bytes_sent)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for root in doc.roots:
        unwatched = f", {root.unwatched} NOT watched" if root.unwatched else ""
        lines.append(f"root {root.path}: {root.watches} directories watched{unwatched}, "
                     f"last full sync {_when(root.last_full_sync, now)}")
    plugin = doc.plugin
    if plugin:
        lines.append(f"plugin {plugin.name}: {plugin.queued} queued, "
                     f"{plugin.waiting_for_remotes} waiting for remotes, "
                     f"{plugin.delivered} delivered, {plugin.dropped} dropped")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sersyncpy status",
        description="Print the status of the sersyncpy running with this config. Exit 0 when "
        "every remote is current, 1 when one lags more than --max-lag, 3 when sersyncpy "
        "is not running or its status file cannot be believed.")
    parser.add_argument("-o", dest="config", metavar="FILE",
                        help="the config (default: confxml.xml); its owner may own the file")
    parser.add_argument("--status-file", metavar="FILE",
                        help="default: beside the config's fail log, *.status.json")
    parser.add_argument("--max-lag", type=float, default=DEFAULT_MAX_LAG, metavar="SECONDS")
    parser.add_argument("--json", action="store_true", help="print the file itself")
    parser.error = _usage_error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    config_path = args.config or (None if args.status_file else "confxml.xml")
    path = args.status_file
    if path is None:
        from sersyncpy import config

        path = default_path(config.load(config_path).fail_log.path)
    try:
        raw = read(path, trusted_owners(config_path))
        doc = None if raw is None else parse(raw)
    except Malformed as exc:
        print(f"UNKNOWN: {path}: {exc}", file=sys.stderr)
        return UNKNOWN
    now = time.time()
    code, why = verdict(doc, args.max_lag, now)
    if doc is not None:
        print(json.dumps(raw, indent=1, ensure_ascii=False) if args.json else table(doc, now))
    print(f"{['OK', 'LAGGING', '', 'UNKNOWN'][code]}: {why}", file=sys.stderr)
    return code


def trusted_owners(config_path: Optional[str]) -> set[int]:
    """Who may own the status file we believe: root, the user asking, the config's owner (the
    status file of a sersyncpy run by a dedicated user is that user's)."""
    owners = {0, os.geteuid()}
    if config_path is not None:
        try:
            owners.add(os.stat(config_path).st_uid)
        except OSError:
            pass  # no config file: nobody more to trust
    return owners


def read(path: str, owners: set[int]) -> object:
    """The JSON value in the status file, None when there is none. Raises Malformed when it
    is not a regular file of one of `owners` that only its owner may write (see statefiles:
    never through a symlink, never blocked by a FIFO), is too long, or is not JSON."""
    try:
        data = statefiles.read_trusted(path, MAX_STATUS_BYTES, owners)
    except statefiles.Untrusted as exc:
        raise Malformed(f"not trusted: {exc}") from None
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[... nested too deep
        raise Malformed(f"not JSON: {exc}") from None


def _usage_error(message: str) -> NoReturn:
    raise UsageError(f"status: {message}")
