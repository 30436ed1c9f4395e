"""The status file's documents, `sersyncpy status`'s verdict and table, and the <crontab>
schedule (fullsync.Schedule, crontab_minutes): table tests, no processes, no clock waits."""

from __future__ import annotations

import json
import logging
import os
from types import SimpleNamespace

import pytest

from sersyncpy import cli, fullsync, status
from sersyncpy.config import Crontab, Filter
from sersyncpy.pool import LaneStats

NOW = 1_700_000_000.0

# --------------------------------------------------------------------------- fullsync.Schedule


def test_schedule_off_is_never_due():
    schedule = fullsync.Schedule(None, 100.0)
    assert schedule.period is None and schedule.next is None
    assert not any(schedule.due(t) for t in (100.0, 160.0, 1e9))


def test_schedule_is_due_every_period_from_the_start():
    schedule = fullsync.Schedule(1, 100.0)
    assert schedule.period == 60.0
    assert not schedule.due(100.0)
    assert not schedule.due(159.999)
    assert schedule.due(160.0)
    assert not schedule.due(160.0)  # once per period
    assert not schedule.due(219.999)
    assert schedule.due(220.0)


def test_schedule_after_a_long_suspension_is_due_once_then_counts_from_then():
    schedule = fullsync.Schedule(10, 0.0)
    assert schedule.due(10_000.0)  # many periods missed: one push, not a burst
    assert not schedule.due(10_000.1)
    assert schedule.next == 10_600.0
    assert not schedule.due(10_599.0)
    assert schedule.due(10_600.0)


def _cfg(start=True, schedule=5, crontab_excludes=(), filter_start=False, excludes=()):
    return SimpleNamespace(crontab=Crontab(start, schedule, tuple(crontab_excludes)),
                           filter=Filter(filter_start, tuple(excludes), False))


@pytest.mark.parametrize("cfg, minutes", [
    (_cfg(start=False), None),
    (_cfg(), 5),
    (_cfg(schedule=1), 1),
    (_cfg(filter_start=True, excludes=(r"(.*)\.gz",), crontab_excludes=("*.gz",)), 5),
    (_cfg(filter_start=True), 5),  # the filter on, but nothing excluded
    (_cfg(filter_start=False, excludes=(r"(.*)\.gz",)), 5),  # excludes of a filter that is off
    (_cfg(start=False, filter_start=True, excludes=(r"(.*)\.gz",)), None),
])
def test_crontab_minutes(cfg, minutes, caplog):
    with caplog.at_level(logging.WARNING):
        assert fullsync.crontab_minutes(cfg) == minutes
    assert not caplog.records


def test_crontab_with_filter_excludes_but_no_crontabfilter_is_off_with_a_warning(caplog):
    cfg = _cfg(filter_start=True, excludes=(r"(.*)\.gz",))
    with caplog.at_level(logging.WARNING):
        assert fullsync.crontab_minutes(cfg) is None
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("<crontab> is off: <filter> excludes paths but "
                                          "<crontabfilter> lists no pattern")


def test_request_offers_one_full_event_of_the_root_to_every_lane():
    class Lane:
        def __init__(self):
            self.offered = []

        def offer(self, events, seq=0):
            self.offered.append(events)

    lanes = [Lane(), Lane()]
    fullsync.request(lanes, "test")
    for lane in lanes:
        ((event,),) = lane.offered
        assert (event.kind, event.path, event.is_dir) == (fullsync.FULL, "", True)


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("fail_log, expected", [
    ("/tmp/rsync_fail_log.sh", "/tmp/rsync_fail_log.status.json"),
    ("/var/log/sersync/fail", "/var/log/sersync/fail.status.json"),
    ("/srv/a.b/fail", "/srv/a.b/fail.status.json"),  # a dot in a directory is no extension
    ("/srv/fail.log.sh", "/srv/fail.log.status.json"),
])
def test_default_path_is_beside_the_fail_log(fail_log, expected):
    assert status.default_path(fail_log) == expected


def test_remote_entry_from_lane_stats():
    stats = LaneStats(batches=4, rsync_runs=5, failures=0, failed_batches=2, files_sent=7,
                      bytes_sent=1234, last_success=NOW - 1, last_full_sync=NOW - 50,
                      last_error="exit 10 (error in socket I/O)")
    entry = status.remote_entry("/src", "127.0.0.1:873::m", stats, 3, 1.23456, False)
    assert entry == {
        "root": "/src", "remote": "127.0.0.1:873::m", "pending": 3, "lag_seconds": 1.235,
        "last_success": NOW - 1, "consecutive_failures": 0, "failed_batches": 2,
        "last_error": "",  # the error of a failure since recovered is not shown
        "files_sent": 7, "bytes_sent": 1234, "rsync_runs": 5, "batches": 4,
        "last_full_sync": NOW - 50, "paused": False,
    }
    stats.failures = 2
    failing = status.remote_entry("/src", "r", stats, 3, 0.0, True)
    assert failing["last_error"] == "exit 10 (error in socket I/O)"
    assert failing["consecutive_failures"] == 2 and failing["paused"] is True


def test_root_entry_last_full_sync_is_the_oldest_of_its_remotes_or_none():
    def remote(root, full):
        return {"root": root, "last_full_sync": full}

    remotes = [remote("/a", 10.0), remote("/a", 20.0), remote("/b", None)]
    assert status.root_entry("/a", 3, 1, remotes) == {
        "path": "/a", "watches": 3, "unwatched": 1, "last_full_sync": 10.0}
    assert status.root_entry("/b", 1, 0, remotes)["last_full_sync"] is None
    assert status.root_entry("/c", 1, 0, remotes)["last_full_sync"] is None  # no remote
    remotes.append(remote("/a", None))
    assert status.root_entry("/a", 3, 0, remotes)["last_full_sync"] is None


def test_document_fields():
    doc = status.document("/etc/confxml.xml", NOW - 5, [], [], None, running=False)
    assert set(doc) == {"format", "pid", "config", "running", "started", "updated", "interval",
                        "roots", "remotes", "plugin"}
    assert (doc["format"], doc["pid"], doc["config"], doc["running"], doc["started"],
            doc["interval"]) == (1, os.getpid(), "/etc/confxml.xml", False, NOW - 5, 2.0)
    assert doc["updated"] >= NOW


def test_write_is_atomic_json_with_a_final_newline(tmp_path):
    path = tmp_path / "s.status.json"
    doc = {"format": 1, "remotes": [{"remote": "ünïcode"}]}
    status.write(str(path), doc)
    status.write(str(path), doc)  # replaces the previous one
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and "ünïcode" in text
    assert json.loads(text) == doc
    assert os.listdir(tmp_path) == ["s.status.json"]  # no temporary file left


# --------------------------------------------------------------------------- verdict


def _remote(name="127.0.0.1:873::backup", lag=0.0, **fields):
    entry = {"root": "/src", "remote": name, "pending": 0, "lag_seconds": lag,
             "last_success": None, "consecutive_failures": 0, "failed_batches": 0,
             "last_error": "", "files_sent": 0, "bytes_sent": 0, "rsync_runs": 0,
             "batches": 0, "last_full_sync": None, "paused": False}
    entry.update(fields)
    return entry


def _doc(remotes=(), age=1.0, running=True, interval=2.0, roots=None, plugin=None):
    return {"format": 1, "pid": 1, "config": "/c.xml", "running": running,
            "started": NOW - 100, "updated": NOW - age, "interval": interval,
            "roots": roots if roots is not None else [
                {"path": "/src", "watches": 2, "unwatched": 0, "last_full_sync": None}],
            "remotes": list(remotes), "plugin": plugin}


@pytest.mark.parametrize("doc, max_lag, code, why", [
    (None, 60, 3, "no status file: is sersyncpy running with this config?"),
    (_doc(running=False), 60, 3, "sersyncpy has stopped"),
    (_doc(running=False, age=1e6), 60, 3, "sersyncpy has stopped"),
    (_doc(age=11), 60, 3, "the status file is 11 s old: sersyncpy is not running or hung"),
    (_doc(age=9.9), 60, 0, "every remote is current"),  # 3 intervals, but at least 10 s
    (_doc(age=14, interval=5), 60, 0, "every remote is current"),
    (_doc(age=16, interval=5), 60, 3, "the status file is 16 s old: sersyncpy is not "
     "running or hung"),
    (_doc([_remote(lag=0.0)]), 60, 0, "every remote is current"),
    (_doc([_remote(lag=60.0)]), 60, 0, "every remote is current"),  # at the limit: current
    (_doc([_remote(lag=60.4)]), 60, 1, "1 remote(s) lag more than 60 s: "
     "127.0.0.1:873::backup (60 s)"),
    (_doc([_remote("a", lag=2.6), _remote("b", lag=0.5), _remote("c", lag=100)]), 1.5, 1,
     "2 remote(s) lag more than 1.5 s: a (3 s), c (100 s)"),
    (_doc([]), 60, 0, "every remote is current"),
])
def test_verdict(doc, max_lag, code, why):
    assert status.verdict(doc, max_lag, NOW) == (code, why)


def test_verdict_stale_before_lagging():
    doc = _doc([_remote(lag=1000)], age=60)
    assert status.verdict(doc, 1, NOW)[0] == status.UNKNOWN


# --------------------------------------------------------------------------- table


def test_table_lines():
    doc = _doc([
        _remote("127.0.0.1:873::backup", lag=0.0, last_success=NOW - 3, files_sent=12,
                bytes_sent=3456),
        _remote("10.0.0.2::m", lag=42.25, pending=7, consecutive_failures=3),
    ], roots=[{"path": "/src", "watches": 12, "unwatched": 0, "last_full_sync": NOW - 3600},
              {"path": "/other", "watches": 5, "unwatched": 2, "last_full_sync": None}])
    lines = status.table(doc, NOW).splitlines()
    assert [line.split() for line in lines[:3]] == [
        ["REMOTE", "ROOT", "PENDING", "LAG", "LAST", "OK", "FAILS", "FILES", "BYTES"],
        ["127.0.0.1:873::backup", "/src", "0", "0.0s", "3s", "ago", "0", "12", "3456"],
        ["10.0.0.2::m", "/src", "7", "42.2s", "never", "3", "0", "0"],
    ]
    # Columns line up: every cell starts where its header does.
    assert lines[1].index("/src") == lines[0].index("ROOT") == lines[2].index("/src")
    assert lines[3:] == [
        "root /src: 12 directories watched, last full sync 3600s ago",
        "root /other: 5 directories watched, 2 NOT watched, last full sync never",
    ]
    assert not any(line != line.rstrip() for line in lines)


def test_table_plugin_line_and_a_future_timestamp():
    doc = _doc([_remote(last_success=NOW + 5)], plugin={
        "name": "http", "queued": 1, "waiting_for_remotes": 2, "delivered": 3, "dropped": 4,
        "failures": 0})
    lines = status.table(doc, NOW).splitlines()
    assert lines[-1] == "plugin http: 1 queued, 2 waiting for remotes, 3 delivered, 4 dropped"
    assert "0s ago" in lines[1]  # a clock step back is not "-5s ago"


# --------------------------------------------------------------------------- sersyncpy status


def _run(capsys, *argv):
    code = cli.main(["status", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_command_without_a_file(tmp_path, capsys):
    code, out, err = _run(capsys, "--status-file", str(tmp_path / "none.json"))
    assert (code, out) == (3, "")
    assert err == "UNKNOWN: no status file: is sersyncpy running with this config?\n"


def test_status_command_current_lagging_and_json(tmp_path, capsys, monkeypatch):
    path = tmp_path / "s.json"
    doc = _doc([_remote(lag=5.0)], age=0)
    status.write(str(path), doc)
    monkeypatch.setattr(status.time, "time", lambda: NOW)
    code, out, err = _run(capsys, "--status-file", str(path))
    assert (code, err) == (0, "OK: every remote is current\n")
    assert out == status.table(doc, NOW) + "\n"
    code, out, err = _run(capsys, "--status-file", str(path), "--max-lag", "4.5")
    assert (code, err) == (1, "LAGGING: 1 remote(s) lag more than 4.5 s: "
                              "127.0.0.1:873::backup (5 s)\n")
    code, out, _ = _run(capsys, "--status-file", str(path), "--json")
    assert code == 0 and json.loads(out) == doc


@pytest.mark.parametrize("content", ["{not json", ""])
def test_status_command_with_an_unreadable_file_is_a_one_line_error(tmp_path, capsys, content):
    path = tmp_path / "s.json"
    path.write_text(content)
    code, out, err = _run(capsys, "--status-file", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"sersyncpy: {path}: cannot read the status file: ")
    assert len(err.splitlines()) == 1


def test_status_command_bad_max_lag_is_a_usage_error(capsys):
    code, out, err = _run(capsys, "--max-lag", "soon")
    assert (code, out) == (2, "")
    assert err.startswith("sersyncpy: status: argument --max-lag: ")
    assert len(err.splitlines()) == 1


def test_status_command_finds_the_file_through_the_config(tmp_path, capsys):
    watch = tmp_path / "w"
    watch.mkdir()
    fail_log = tmp_path / "logs" / "fail.sh"
    fail_log.parent.mkdir()
    conf = tmp_path / "c.xml"
    conf.write_text(f"""<head version="2.5"><sersync>
        <localpath watch="{watch}"><remote ip="127.0.0.1" name="m"/></localpath>
        <failLog path="{fail_log}" timeToExecute="60"/>
        </sersync></head>""")
    status.write(str(tmp_path / "logs" / "fail.status.json"), _doc(running=False))
    code, _, err = _run(capsys, "-o", str(conf))
    assert (code, err) == (3, "UNKNOWN: sersyncpy has stopped\n")
