"""`sersyncpy status`: prints the status file (statusfile.py) of the sersyncpy running with a
config and exits non-zero when a remote lags or the file cannot be believed, so a failover
script or a monitoring check can ask whether the replicas are current.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import NoReturn, Optional

from sersyncpy import statefiles
from sersyncpy.errors import UsageError
from sersyncpy.statusfile import Malformed, Status, default_path, parse

DEFAULT_MAX_LAG = 60.0  # seconds; `sersyncpy status` exits 1 beyond it
# The most `sersyncpy status` reads: some 9,000 remotes' entries, where a real file has a few.
MAX_STATUS_BYTES = 4 << 20

# `sersyncpy status` exit codes (as monitoring plugins read them: 0 OK, 1 warning, 3 unknown).
CURRENT, LAGGING, UNKNOWN = 0, 1, 3


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
        unreadable = f", {root.unreadable} unreadable" if root.unreadable else ""
        watched = ("watched whole by fanotify" if doc.watcher == "fanotify"
                   else f"{root.watches} directories watched")
        lines.append(f"root {root.path}: {watched}{unwatched}"
                     f"{unreadable}, last full sync {_when(root.last_full_sync, now)}")
    if doc.fail_log is not None and doc.fail_log.error:
        lines.append(f"fail log {doc.fail_log.path}: cannot be written since "
                     f"{_when(doc.fail_log.failing_since, now)}: {doc.fail_log.error}")
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
