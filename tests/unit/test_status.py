"""The status file's documents and `sersyncpy status`'s verdict and table: table tests, no
clock waits; the command itself runs as a monitoring system runs it, a process that exits
(tests/integration/test_security.py has the files of another uid, which need root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from sersyncpy import cli, status, statusfile
from sersyncpy.faillog import WriteHealth, write_atomically
from sersyncpy.push import LaneStats

NOW = 1_700_000_000.0

# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("fail_log, expected", [
    ("/tmp/rsync_fail_log.sh", "/tmp/rsync_fail_log.status.json"),
    ("/var/log/sersync/fail", "/var/log/sersync/fail.status.json"),
    ("/srv/a.b/fail", "/srv/a.b/fail.status.json"),  # a dot in a directory is no extension
    ("/srv/fail.log.sh", "/srv/fail.log.status.json"),
])
def test_default_path_is_beside_the_fail_log(fail_log, expected):
    assert statusfile.default_path(fail_log) == expected


def test_remote_status_from_lane_stats():
    stats = LaneStats(batches=4, rsync_runs=5, failures=0, failed_batches=2, files_sent=7,
                      bytes_sent=1234, last_success=NOW - 1, last_full_sync=NOW - 50,
                      last_error="exit 10 (error in socket I/O)", events_in=20, events_out=12,
                      paths=11, collapses=1)
    entry = statusfile.remote_status("/src", "127.0.0.1:873::m", stats, 3, 1.23456, False)
    assert entry == statusfile.RemoteStatus(
        root="/src", remote="127.0.0.1:873::m", pending=3, lag_seconds=1.235,
        last_success=NOW - 1, consecutive_failures=0, failed_batches=2,
        last_error="",  # the error of a failure since recovered is not shown
        files_sent=7, bytes_sent=1234, rsync_runs=5, batches=4,
        last_full_sync=NOW - 50, paused=False, pending_collapses=1, events=20,
        events_collapsed=5, paths=11)  # 20 offered, 12 taken, 3 still pending
    stats.failures = 2
    failing = statusfile.remote_status("/src", "r", stats, 3, 0.0, True)
    assert failing.last_error == "exit 10 (error in socket I/O)"
    assert failing.consecutive_failures == 2 and failing.paused is True


def test_root_status_last_full_sync_is_the_oldest_of_its_remotes_or_none():
    def remote(root, full):
        return statusfile.RemoteStatus(root, "r", 0, 0.0, None, 0, 0, 0, last_full_sync=full)

    remotes = (remote("/a", 10.0), remote("/a", 20.0), remote("/b", None))
    assert statusfile.root_status("/a", 3, 1, 2, remotes) == statusfile.RootStatus(
        path="/a", watches=3, unwatched=1, last_full_sync=10.0, unreadable=2)
    assert statusfile.root_status("/b", 1, 0, 0, remotes).last_full_sync is None
    assert statusfile.root_status("/c", 1, 0, 0, remotes).last_full_sync is None  # no remote
    remotes += (remote("/a", None),)
    assert statusfile.root_status("/a", 3, 0, 0, remotes).last_full_sync is None


def _status(**fields) -> statusfile.Status:
    return statusfile.Status(**{
        "format": 1, "running": True, "updated": NOW, "interval": 2.0, "remotes": (),
        "roots": (), "plugin": None, **fields})


def test_the_document_written_is_the_document_read():
    health = WriteHealth("/var/lib/sersyncpy/rsync_fail_log.sh", "No space left on device",
                         NOW - 9, 3)
    doc = _status(running=False, pid=os.getpid(), config="/etc/confxml.xml",
                  started=NOW - 5, fail_log=statusfile.file_status(health), overflows=2)
    raw = json.loads(statusfile.render(doc))
    assert set(raw) == {"format", "pid", "config", "running", "started", "updated", "interval",
                        "roots", "remotes", "plugin", "fail_log", "status_file", "overflows",
                        "watcher"}
    assert raw["fail_log"] == {"path": "/var/lib/sersyncpy/rsync_fail_log.sh",
                               "error": "No space left on device", "failing_since": NOW - 9,
                               "failures": 3}
    assert statusfile.parse(raw) == doc


def test_write_is_atomic_json_with_a_final_newline(tmp_path):
    path = tmp_path / "s.status.json"
    doc = _status(config="ünïcode")
    statusfile.write(str(path), doc)
    statusfile.write(str(path), doc)  # replaces the previous one
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and "ünïcode" in text
    assert statusfile.parse(json.loads(text)) == doc
    assert os.listdir(tmp_path) == ["s.status.json"]  # no temporary file left


# --------------------------------------------------------------------------- verdict


def _write_document(path: str, doc: dict) -> None:
    """A status document as a running sersyncpy leaves it (atomically, 0644)."""
    write_atomically(path, (json.dumps(doc) + "\n").encode(), mode=0o644)


def _remote(name="127.0.0.1:873::backup", lag=0.0, **fields):
    entry = {"root": "/src", "remote": name, "pending": 0, "lag_seconds": lag,
             "last_success": None, "consecutive_failures": 0, "failed_batches": 0,
             "last_error": "", "files_sent": 0, "bytes_sent": 0, "rsync_runs": 0,
             "batches": 0, "last_full_sync": None, "paused": False}
    entry.update(fields)
    return entry


def _parsed(doc):
    return None if doc is None else statusfile.parse(doc)


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
    assert status.verdict(_parsed(doc), max_lag, NOW) == (code, why)


def test_verdict_stale_before_lagging():
    doc = _doc([_remote(lag=1000)], age=60)
    assert status.verdict(statusfile.parse(doc), 1, NOW)[0] == status.UNKNOWN


def test_verdict_of_a_file_dated_ahead_is_unknown():
    # A clock set back after sersyncpy stopped: "updated" cannot tell whether it still runs.
    assert status.verdict(statusfile.parse(_doc(age=-9.9)), 60, NOW)[0] == status.CURRENT
    assert status.verdict(statusfile.parse(_doc(age=-3600)), 60, NOW) == (
        status.UNKNOWN, "the status file is dated 3600 s ahead: is the clock right?")


# --------------------------------------------------------------------------- table


def test_table_lines():
    doc = _doc([
        _remote("127.0.0.1:873::backup", lag=0.0, last_success=NOW - 3, files_sent=12,
                bytes_sent=3456),
        _remote("10.0.0.2::m", lag=42.25, pending=7, consecutive_failures=3),
    ], roots=[{"path": "/src", "watches": 12, "unwatched": 0, "last_full_sync": NOW - 3600},
              {"path": "/other", "watches": 5, "unwatched": 2, "last_full_sync": None}])
    lines = status.table(statusfile.parse(doc), NOW).splitlines()
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
    lines = status.table(statusfile.parse(doc), NOW).splitlines()
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
    _write_document(str(path), doc)
    monkeypatch.setattr(status.time, "time", lambda: NOW)
    code, out, err = _run(capsys, "--status-file", str(path))
    assert (code, err) == (0, "OK: every remote is current\n")
    assert out == status.table(statusfile.parse(doc), NOW) + "\n"
    code, out, err = _run(capsys, "--status-file", str(path), "--max-lag", "4.5")
    assert (code, err) == (1, "LAGGING: 1 remote(s) lag more than 4.5 s: "
                              "127.0.0.1:873::backup (5 s)\n")
    code, out, _ = _run(capsys, "--status-file", str(path), "--json")
    assert code == 0 and json.loads(out) == doc


@pytest.mark.parametrize("content", ["{not json", ""])
def test_status_command_with_an_unreadable_file_is_unknown_in_one_line(tmp_path, capsys,
                                                                        content):
    path = tmp_path / "s.json"
    path.write_text(content)
    code, out, err = _run(capsys, "--status-file", str(path))
    assert (code, out) == (3, "")
    assert err.startswith(f"UNKNOWN: {path}: not JSON: ")
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
    _write_document(str(tmp_path / "logs" / "fail.status.json"), _doc(running=False))
    code, _, err = _run(capsys, "-o", str(conf))
    assert (code, err) == (3, "UNKNOWN: sersyncpy has stopped\n")


# --------------------------------------------------------------------------- files not believed


def _fresh_doc(**fields):
    """A document that says "running, every remote current", written just now."""
    doc = _doc([_remote()])
    doc.update(updated=time.time(), started=time.time() - 100, **fields)
    return doc


def _with(change):
    doc = _doc([_remote()], plugin={"name": "http", "queued": 1, "waiting_for_remotes": 2,
                                    "delivered": 3, "dropped": 4, "failures": 0})
    change(doc)
    return doc


def test_parse_reads_what_render_writes():
    stats = LaneStats(batches=1, files_sent=2, bytes_sent=3, last_success=NOW - 1)
    remotes = (statusfile.remote_status("/src", "10.0.0.2::m", stats, 4, 5.5, False),)
    roots = (statusfile.root_status("/src", 6, 1, 0, remotes),)
    plugin = statusfile.PluginStatus("http", 1, 0, 2, 0)
    doc = _status(remotes=remotes, roots=roots, plugin=plugin, config="/c.xml",
                  fail_log=statusfile.file_status(WriteHealth("/f.sh")))
    read = statusfile.parse(json.loads(statusfile.render(doc)))
    assert read == doc
    assert read.remotes[0].pending == 4 and read.roots[0].watches == 6
    assert (read.format, read.running, read.interval) == (statusfile.FORMAT, True, 2.0)


def test_parse_ignores_fields_it_does_not_read():
    doc = _doc([_remote(later="a field of a newer sersyncpy")])
    doc["fail_log"] = {"path": "/var/lib/sersyncpy/fail.sh", "error": "", "failures": 0}
    doc["roots"][0]["unreadable"] = 2
    assert status.verdict(statusfile.parse(doc), 60, NOW) == (0, "every remote is current")


@pytest.mark.parametrize("change, why", [
    (lambda d: d.pop("updated"), 'the document has no "updated"'),
    (lambda d: d.update(running="yes"), 'running is "yes", not true or false'),
    (lambda d: d.update(updated=None), "updated is null, not a finite number"),
    (lambda d: d.update(updated=float("inf")), "updated is Infinity, not a finite number"),
    (lambda d: d.update(interval=True), "interval is true, not a finite number"),
    (lambda d: d.update(format="1"), 'format is "1", not a whole number of zero or more'),
    (lambda d: d.update(format=2), "format 2, where this sersyncpy reads 1"),
    (lambda d: d.update(remotes={"a": 1}), 'remotes is {"a": 1}, not a list'),
    (lambda d: d["remotes"].append(7), "remotes[1] is 7, not an object"),
    (lambda d: d["remotes"][0].update(lag_seconds="5"),
     'remotes[0].lag_seconds is "5", not a finite number'),
    (lambda d: d["remotes"][0].update(lag_seconds=float("nan")),
     "remotes[0].lag_seconds is NaN, not a finite number"),
    (lambda d: d["remotes"][0].update(pending=-1),
     "remotes[0].pending is -1, not a whole number of zero or more"),
    (lambda d: d["remotes"][0].update(pending=1.5),
     "remotes[0].pending is 1.5, not a whole number of zero or more"),
    (lambda d: d["remotes"][0].update(remote=["x" * 50]),
     'remotes[0].remote is ["' + "x" * 35 + '..., not a string'),  # cut at 40
    (lambda d: d["remotes"][0].update(last_success="never"),
     'remotes[0].last_success is "never", not a finite number'),
    (lambda d: d["roots"][0].pop("watches"), 'roots[0] has no "watches"'),
    (lambda d: d.update(plugin=[]), "plugin is [], not an object"),
    (lambda d: d["plugin"].update(queued=None), "plugin.queued is null, not a whole number "
     "of zero or more"),
])
def test_parse_names_the_first_field_of_the_wrong_shape(change, why):
    with pytest.raises(statusfile.Malformed) as raised:
        statusfile.parse(_with(change))
    assert str(raised.value) == why


def _status_command(path, *argv):
    """The real command, as a monitoring system runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sersyncpy", "status", "--status-file", str(path), *argv],
        capture_output=True, text=True, timeout=30)


def _assert_unknown(result, path, why=""):
    assert (result.returncode, result.stdout) == (3, ""), result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"UNKNOWN: {path}: {why}"), result.stderr


def _write_json(path, value):
    path.write_text(json.dumps(value))


MALFORMED_FILES = {
    "invalid JSON": lambda p: p.write_text('{"format": 1, "running": true,'),
    "not UTF-8": lambda p: p.write_bytes(b'{"config": "\xff"}'),
    "a list": lambda p: _write_json(p, [_fresh_doc()]),
    "remotes not a list": lambda p: _write_json(p, _fresh_doc(remotes={"r": _remote()})),
    "lag a string": lambda p: _write_json(p, _fresh_doc(remotes=[_remote(lag="5")])),
    "lag NaN": lambda p: p.write_text(json.dumps(_fresh_doc(remotes=[_remote(lag=1e999)]))),
    "missing updated": lambda p: _write_json(
        p, {k: v for k, v in _fresh_doc().items() if k != "updated"}),
    "nested too deep": lambda p: p.write_text("[" * 200_000),
    "a 100 MB file": lambda p: (p.touch(), os.truncate(p, 100 << 20)),  # sparse
    "a FIFO": lambda p: os.mkfifo(p),
    "a symlink to a good file": lambda p: (_write_document(str(p.with_name("good")), _fresh_doc()),
                                           p.symlink_to("good")),
    "a directory": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("make", MALFORMED_FILES.values(), ids=MALFORMED_FILES.keys())
def test_status_command_on_a_malformed_file_is_unknown_without_a_traceback(tmp_path, make):
    path = tmp_path / "s.status.json"
    make(path)
    _assert_unknown(_status_command(path), path)


def test_status_command_on_a_good_file_is_current(tmp_path):
    path = tmp_path / "s.status.json"
    _write_document(str(path), _fresh_doc())
    result = _status_command(path)
    assert (result.returncode, result.stderr) == (0, "OK: every remote is current\n")


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_status_file_others_may_write_is_unknown(tmp_path, mode):
    path = tmp_path / "s.status.json"
    _write_document(str(path), _fresh_doc())
    os.chmod(path, mode)
    _assert_unknown(_status_command(path), path, "not trusted: ")
