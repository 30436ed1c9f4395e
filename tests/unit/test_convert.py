"""Table tests of sersyncpy.convert: each converter's values and the words of its refusals, and
the places that share them (-n, the SERSYNCPY_* settings, every regex of the config)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import pytest

from sersyncpy import cli, convert, statefiles, wiring
from sersyncpy.config import Filter
from sersyncpy.errors import UsageError
from sersyncpy.plugins import Notice
from sersyncpy.plugins.command import CommandPlugin
from sersyncpy.plugins.refreshcdn import refresh_target
from sersyncpy.plugins.settings import CdnSettings, CommandSettings

NUMBERS = convert.RSYNC_INT_MAX

# (converter, text, value)
ACCEPTED: list[tuple[Callable[[str], object], str, object]] = [
    (convert.boolean, "true", True),
    (convert.boolean, "True", False),
    (convert.boolean, " true", False),
    (convert.boolean, "", False),
    (convert.boolean_default_true, "false", False),
    (convert.boolean_default_true, "no", True),
    (convert.boolean_default_true, "", True),
    (convert.integer, " 42 ", 42),
    (convert.integer, "+7", 7),
    (convert.integer, "-3", -3),
    (convert.non_negative, "0", 0),
    (convert.positive, "1", 1),
    (convert.seconds_for_rsync, "0", 0),
    (convert.seconds_for_rsync, str(NUMBERS), NUMBERS),
    (convert.minutes, "600", 600),
    (convert.port, "1", 1),
    (convert.port, " 65535 ", 65535),
    (convert.port_or_zero, "0", 0),
    (convert.port_or_zero, "8080", 8080),
    (convert.seconds, "0.5", 0.5),
    (convert.seconds, " 300 ", 300.0),
    (convert.seconds_or_zero, "0", 0.0),
    (convert.seconds_or_zero, "2.5", 2.5),
    (convert.nonempty, "  a b  ", "a b"),
    (convert.http_url, " http://h:81/x ", "http://h:81/x"),
    (convert.http_url, "https://h/", "https://h/"),
    (convert.argv, "-artuz --delete 'a b'", ("-artuz", "--delete", "a b")),
    (convert.argv, "", ()),
    (convert.program, "/bin/sh -c 'x'", ("/bin/sh", "-c", "x")),
    (convert.remote_shell, " ssh -p 2222 ", "ssh -p 2222"),
    (convert.regex, r"(.*)\.svn", r"(.*)\.svn"),
    (convert.path, " /a/b/ ", "/a/b"),
    (convert.password_file, "  ", None),
    (convert.choice("HEAD", "GET"), "GET", "GET"),
]

# (converter, text, the ValueError's words)
REFUSED: list[tuple[Callable[[str], object], str, str]] = [
    (convert.integer, "1.5", "not an integer"),
    (convert.integer, "", "not an integer"),
    (convert.integer, "1_000", "not an integer"),
    (convert.non_negative, "-1", "must not be negative"),
    (convert.positive, "0", "must be at least 1"),
    (convert.positive, "x", "not an integer"),
    (convert.seconds_for_rsync, "-1", "must not be negative"),
    (convert.seconds_for_rsync, str(NUMBERS + 1), f"too large (rsync takes at most {NUMBERS})"),
    (convert.minutes, "0", "not a positive number of minutes"),
    (convert.minutes, "soon", "not a positive number of minutes"),
    (convert.port, "0", "not a port number (1..65535)"),
    (convert.port, "65536", "not a port number (1..65535)"),
    (convert.port, "http", "not a port number (1..65535)"),
    (convert.port_or_zero, "-1", "not a port number (1..65535, or 0 for none)"),
    (convert.seconds, "soon", "not a number of seconds"),
    (convert.seconds, "0", "must be a positive number of seconds"),
    (convert.seconds, "inf", "must be a positive number of seconds"),
    (convert.seconds, "nan", "must be a positive number of seconds"),
    (convert.seconds_or_zero, "soon", "not a number of seconds"),
    (convert.seconds_or_zero, "-1", "must be zero or more"),
    (convert.seconds_or_zero, "nan", "must be zero or more"),
    (convert.nonempty, " ", "must not be empty"),
    (convert.http_url, "ftp://h/", "not an http:// or https:// URL"),
    (convert.http_url, "http:///x", "not an http:// or https:// URL"),
    (convert.http_url, "http://h:port/", "the URL's port is not a number (1..65535)"),
    (convert.argv, "'open", "cannot be split into arguments: No closing quotation"),
    (convert.program, " ", "must name the program to run (the changed path is its argument)"),
    (convert.remote_shell, "", "must name the program to run (the changed path is its argument)"),
    (convert.path, " ", "must not be empty"),
    (convert.directory, "", "must not be empty"),
    (convert.choice("HEAD", "GET"), "head", "expected one of HEAD, GET"),
]


@pytest.mark.parametrize(("converter", "text", "expected"), ACCEPTED)
def test_accepted(converter: Callable[[str], object], text: str, expected: object) -> None:
    assert converter(text) == expected


@pytest.mark.parametrize(("converter", "text", "problem"), REFUSED)
def test_refused_with_what_is_wrong(converter: Callable[[str], object], text: str,
                                    problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        converter(text)
    assert str(caught.value) == problem


@pytest.mark.parametrize(("converter", "text", "no_number"), [
    (convert.integer, "x", True),
    (convert.positive, "x", True),
    (convert.positive, "0", False),
    (convert.seconds, "soon", True),
    (convert.seconds, "-1", False),
    (convert.seconds_or_zero, "soon", True),
    (convert.seconds_or_zero, "-1", False),
])
def test_no_number_at_all_is_told_apart_from_one_out_of_range(
    converter: Callable[[str], object], text: str, no_number: bool
) -> None:
    with pytest.raises(ValueError) as caught:
        converter(text)
    assert isinstance(caught.value, convert.NotANumber) is no_number


def test_lenient_gives_the_default_for_a_bad_value_only() -> None:
    minutes = convert.lenient(convert.minutes, 600)
    assert (minutes("5"), minutes("0"), minutes("soon")) == (5, 600, 600)


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert convert.directory(f" {tmp_path}/ ") == str(tmp_path)
    for name, problem in (("nope", "directory does not exist"), ("file", "not a directory")):
        with pytest.raises(ValueError, match=f"^{problem}$"):
            convert.directory(str(tmp_path / name))


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "rsync.pas"
    secret.write_text("s\n")
    secret.chmod(0o600)
    assert convert.password_file(f" {secret} ") == str(secret)
    secret.chmod(0o640)
    with pytest.raises(ValueError, match=r"^mode 0640, must be 0600 \(readable by its owner"):
        convert.password_file(str(secret))
    with pytest.raises(ValueError, match="^not a regular file$"):
        convert.password_file(str(tmp_path))
    with pytest.raises(ValueError, match="^cannot use password file: No such file"):
        convert.password_file(str(tmp_path / "nope"))


def test_fail_log_path(tmp_path: Path, monkeypatch) -> None:
    assert convert.fail_log_path(" ") == statefiles.default_fail_log()
    assert convert.fail_log_path(str(tmp_path / "fail.sh")) == str(tmp_path / "fail.sh")
    with pytest.raises(ValueError, match="^is a directory$"):
        convert.fail_log_path(str(tmp_path))
    with pytest.raises(ValueError, match="^its directory does not exist$"):
        convert.fail_log_path(str(tmp_path / "nope" / "fail.sh"))
    monkeypatch.chdir(tmp_path)
    assert convert.fail_log_path("fail.sh") == os.path.join(tmp_path, "fail.sh")


# --- one regex compile, as sersync's Boost: "." takes a newline -------------------------------


def test_regex_is_a_source_that_compiles() -> None:
    with pytest.raises(ValueError, match=r"^invalid regular expression: missing \)"):
        convert.regex("(.*")


def test_pattern_lets_dot_match_a_newline_as_boost_did() -> None:
    compiled = convert.pattern(r"(.*)\.php")
    assert isinstance(compiled, re.Pattern) and compiled.flags & re.DOTALL
    assert compiled.fullmatch("/w/a\nb.php")


def test_every_regex_of_the_config_is_compiled_by_pattern() -> None:
    """<filter> excludes, the command plugin's includes and refreshCDN's match."""
    name = "/w/new\nline.php"
    assert Filter(True, (r".*\.php",), True).compiled()[0].fullmatch(name[3:])
    command = CommandSettings(("/bin/true",), (), False, (r"/w/.*\.php",), 10.0)
    assert CommandPlugin(command).wanted(name)
    cdn = CdnSettings(watch="/w", domain="d", port=80, username="u", password="p",
                      base="http://site", regex=True, match=r"/w(/new.line)")
    notice = Notice("update", name, "/w", name[3:], False, 0, 0.0)
    assert refresh_target(cdn, notice) == "http://site/new\nline.php"


# --- the command line and the environment use them, in their own words ---------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("4", 4), (" 4 ", 4), ("x", "-n 'x': not a whole number"),
    ("1.5", "-n '1.5': not a whole number"), ("0", "-n '0': must be at least 1"),
    ("-2", "-n '-2': must be at least 1"),
])
def test_threads_of_minus_n(text: str, expected: object) -> None:
    if isinstance(expected, int):
        assert cli.parse_threads(text) == expected
        return
    with pytest.raises(UsageError) as caught:
        cli.parse_threads(text)
    assert str(caught.value) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("", 7.0), ("  ", 7.0), ("0", 0.0), (" 2.5 ", 2.5),
    ("soon", "SERSYNCPY_X_SECONDS='soon': not a number of seconds"),
    ("-1", "SERSYNCPY_X_SECONDS='-1': must be zero or more"),
    ("nan", "SERSYNCPY_X_SECONDS='nan': must be zero or more"),
])
def test_seconds_from_the_environment(monkeypatch, text: str, expected: object) -> None:
    monkeypatch.setenv("SERSYNCPY_X_SECONDS", text)
    if isinstance(expected, float):
        assert wiring.env_seconds("SERSYNCPY_X_SECONDS", 7.0) == expected
        return
    with pytest.raises(UsageError) as caught:
        wiring.env_seconds("SERSYNCPY_X_SECONDS", 7.0)
    assert str(caught.value) == expected
