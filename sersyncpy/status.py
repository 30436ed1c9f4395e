"""The status file (JSON, rewritten every few seconds even when idle) and `sersyncpy status`,
which prints it and exits non-zero when a remote lags, so a failover script or a monitoring
check can ask whether the replicas are current.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Optional

from sersyncpy.errors import UsageError
from sersyncpy.faillog import write_atomically

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
    }


def root_entry(path: str, watched: int, unwatched: int, remotes: list[dict]) -> dict:
    fulls = [r["last_full_sync"] for r in remotes if r["root"] == path]
    return {
        "path": path,
        "watches": watched,
        "unwatched": unwatched,
        # When every remote of the root had its last full sync (null: one never had one).
        "last_full_sync": None if not fulls or None in fulls else min(fulls),
    }


def document(config: str, started: float, roots: list[dict], remotes: list[dict],
             plugin: Optional[dict], running: bool = True) -> dict:
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
    }


def write(path: str, doc: dict) -> None:
    """Atomically: a reader never sees half a file."""
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    write_atomically(path, text.encode("utf-8"), mode=0o644)


# --- sersyncpy status ------------------------------------------------------------------------


def verdict(doc: Optional[dict], max_lag: float, now: float) -> tuple[int, str]:
    """(exit code, one line saying why) for a status document (None: no file)."""
    if doc is None:
        return UNKNOWN, "no status file: is sersyncpy running with this config?"
    if not doc.get("running", False):
        return UNKNOWN, "sersyncpy has stopped"
    age = now - float(doc.get("updated", 0))
    if age > max(3 * float(doc.get("interval", STATUS_SECONDS)), 10.0):
        return UNKNOWN, f"the status file is {age:.0f} s old: sersyncpy is not running or hung"
    late = [r for r in doc.get("remotes", []) if r["lag_seconds"] > max_lag]
    if late:
        names = ", ".join(f"{r['remote']} ({r['lag_seconds']:.0f} s)" for r in late)
        return LAGGING, f"{len(late)} remote(s) lag more than {max_lag:g} s: {names}"
    return CURRENT, "every remote is current"


def _when(timestamp: Optional[float], now: float) -> str:
    if timestamp is None:
        return "never"
    return f"{max(0.0, now - timestamp):.0f}s ago"


def table(doc: dict, now: float) -> str:
    rows = [("REMOTE", "ROOT", "PENDING", "LAG", "LAST OK", "FAILS", "FILES", "BYTES")]
    for r in doc.get("remotes", []):
        rows.append((r["remote"], r["root"], str(r["pending"]), f"{r['lag_seconds']:.1f}s",
                     _when(r["last_success"], now), str(r["consecutive_failures"]),
                     str(r["files_sent"]), str(r["bytes_sent"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for root in doc.get("roots", []):
        unwatched = f", {root['unwatched']} NOT watched" if root["unwatched"] else ""
        lines.append(f"root {root['path']}: {root['watches']} directories watched{unwatched}, "
                     f"last full sync {_when(root['last_full_sync'], now)}")
    plugin = doc.get("plugin")
    if plugin:
        lines.append(f"plugin {plugin['name']}: {plugin['queued']} queued, "
                     f"{plugin['waiting_for_remotes']} waiting for remotes, "
                     f"{plugin['delivered']} delivered, {plugin['dropped']} dropped")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sersyncpy status",
        description="Print the status of the sersyncpy running with this config. Exit 0 when "
        "every remote is current, 1 when one lags more than --max-lag, 3 when sersyncpy "
        "is not running.")
    parser.add_argument("-o", dest="config", default="confxml.xml", metavar="FILE")
    parser.add_argument("--status-file", metavar="FILE",
                        help="default: beside the config's fail log, *.status.json")
    parser.add_argument("--max-lag", type=float, default=DEFAULT_MAX_LAG, metavar="SECONDS")
    parser.add_argument("--json", action="store_true", help="print the file itself")
    parser.error = _usage_error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    path = args.status_file
    if path is None:
        from sersyncpy import config

        path = default_path(config.load(args.config).fail_log.path)
    doc = read(path)
    now = time.time()
    code, why = verdict(doc, args.max_lag, now)
    if doc is not None:
        print(json.dumps(doc, indent=1, ensure_ascii=False) if args.json else table(doc, now))
    print(f"{['OK', 'LAGGING', '', 'UNKNOWN'][code]}: {why}", file=sys.stderr)
    return code


def read(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the status file: {exc}") from None


def _usage_error(message: str):
    raise UsageError(f"status: {message}")
