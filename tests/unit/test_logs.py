"""Progress lines: counts and rate, in the log every few seconds, or in place on a terminal."""

import io
import logging

from sersyncpy import logs


def test_progress_logs_counts_and_rate_at_most_every_interval(caplog, monkeypatch):
    clock = iter([100.0, 100.0, 101.0, 102.0, 106.0, 107.0])
    monkeypatch.setattr(logs.time, "monotonic", lambda: next(clock))
    progress = logs.Progress("watching", "directories", interval=5.0)  # started at 100
    progress.tty = False
    with caplog.at_level(logging.INFO, logger="sersyncpy.progress"):
        progress.update(1000)  # t=100: 0 s since the last line (none): shown
        progress.update(2000)  # t=101: too soon
        progress.update(3000)  # t=102: too soon
        progress.update(60000, total=100000)  # t=106: shown
        progress.done()
    lines = [r.getMessage() for r in caplog.records]  # kept: the lines are the product
    assert len(lines) == 2, lines
    assert lines[1] == "watching: 60,000 of 100,000 directories in 6 s (10,000/s)"


def test_progress_on_a_terminal_rewrites_one_line_and_clears_it(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", screen)
    clock = iter([10.0, 11.0, 11.1, 12.0])
    monkeypatch.setattr(logs.time, "monotonic", lambda: next(clock))
    progress = logs.Progress("-r full sync", "remotes done")
    progress.tty = True
    progress.update(1, total=3)  # t=11
    progress.update(2, total=3)  # t=11.1: within 0.2 s, not drawn
    progress.update(3, total=3)  # t=12
    progress.done()
    assert screen.getvalue() == (
        "\r\033[K-r full sync: 1 of 3 remotes done in 1 s (1/s)"
        "\r\033[K-r full sync: 3 of 3 remotes done in 2 s (2/s)"
        "\r\033[K")


def test_a_log_file_that_cannot_be_reopened_keeps_the_old_one(tmp_path):
    path = tmp_path / "logs" / "sersyncpy.log"
    path.parent.mkdir()
    handler = logs.ReopenableFileHandler(str(path))
    try:
        path.parent.rename(tmp_path / "gone")  # logrotate's directory went away
        handler.reopen()  # must not raise: the old stream stays
        handler.emit(logging.LogRecord("x", logging.INFO, "", 0, "still here", None, None))
        handler.flush()
        assert "still here" in (tmp_path / "gone" / "sersyncpy.log").read_text()
    finally:
        handler.close()
