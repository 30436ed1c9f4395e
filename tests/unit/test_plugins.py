"""Unit tests of the plugins: what they are told (notices_for, record), what each sends
(command argv, socket payload, refreshCDN URL, http body), the sync-mode Gate and the Runner
thread. http and refreshCDN ask real servers on 127.0.0.1 (integration/servers.py), good and
bad; the command plugin runs a real tiny Python program.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import quote, quote_plus, unquote_to_bytes

import hypothesis
import pytest
from conftest import free_port, wait_until
from hypothesis import strategies as st
from integration.servers import HttpRecorder, HugeReplyServer, Request, TrickleServer

from sersyncpy import config
from sersyncpy.config import LocalPath
from sersyncpy.events import DELETE, FULL, RENAME, SUBTREE, UPDATE, Event
from sersyncpy.plugins import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_ISDIR,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    DeliveryError,
    Notice,
    Plugin,
    notices_for,
    record,
    refreshcdn,
    standalone_roots,
)
from sersyncpy.plugins import http as httpmod
from sersyncpy.plugins.command import CommandPlugin, command_argv
from sersyncpy.plugins.gate import Gate
from sersyncpy.plugins.http import HttpPlugin, form_body, json_body
from sersyncpy.plugins.httpclient import DEFAULT_LIMITS, Limits, Url
from sersyncpy.plugins.interpreter import interpreter_hazard
from sersyncpy.plugins.refreshcdn import CdnPlugin, refresh_target, request_url, whatsup
from sersyncpy.plugins.registry import build
from sersyncpy.plugins.runner import Runner
from sersyncpy.plugins.settings import (
    CdnSettings,
    CommandSettings,
    Delivery,
    HttpSettings,
    SocketSettings,
)
from sersyncpy.plugins.socket import SocketPlugin, json_line, sersync_payload

NOW = 1700000000.5
REPO_CONFXML = Path(__file__).resolve().parents[2] / "confxml.xml"
CAFE = os.fsdecode(b"caf\xe9")  # not UTF-8: "caf\udce9"


def notice(path: str, kind: str = "update", is_dir: bool = False, root: str = "/w",
           mask: Optional[int] = None) -> Notice:
    """A notice for `path` (absolute, under `root`)."""
    rel = path[len(root):].lstrip("/")
    if mask is None:
        mask = (IN_ATTRIB if is_dir else IN_CLOSE_WRITE) if kind == "update" else IN_DELETE
    return Notice(kind, path, root, rel, is_dir, mask | (IN_ISDIR if is_dir else 0), NOW)


# --- notices_for --------------------------------------------------------------------------


def test_update_of_a_file_is_an_update_with_close_write() -> None:
    assert notices_for("/w", [Event(UPDATE, "d/f.txt")], NOW) == [
        Notice("update", "/w/d/f.txt", "/w", "d/f.txt", False, IN_CLOSE_WRITE, NOW)
    ]


def test_update_of_a_directory_is_attrib_isdir() -> None:
    assert notices_for("/w", [Event(UPDATE, "d", True)], NOW) == [
        Notice("update", "/w/d", "/w", "d", True, IN_ATTRIB | IN_ISDIR, NOW)
    ]


def test_subtree_is_an_update_of_the_directory_with_create_isdir() -> None:
    # A SUBTREE event may not say is_dir; the notice is a directory all the same.
    for is_dir in (True, False):
        assert notices_for("/w", [Event(SUBTREE, "new", is_dir)], NOW) == [
            Notice("update", "/w/new", "/w", "new", True, IN_CREATE | IN_ISDIR, NOW)
        ]


def test_delete_of_a_file_and_of_a_directory() -> None:
    events = [Event(DELETE, "f"), Event(DELETE, "d", True)]
    assert notices_for("/w", events, NOW) == [
        Notice("delete", "/w/f", "/w", "f", False, IN_DELETE, NOW),
        Notice("delete", "/w/d", "/w", "d", True, IN_DELETE | IN_ISDIR, NOW),
    ]


def test_delete_of_the_root_gives_nothing() -> None:
    assert notices_for("/w", [Event(DELETE, "", True)], NOW) == []


def test_full_sync_gives_nothing() -> None:
    assert notices_for("/w", [Event(FULL, "", True), Event(FULL, "d", True)], NOW) == []


def test_rename_is_a_delete_of_the_source_then_an_update_of_the_destination() -> None:
    assert notices_for("/w", [Event(RENAME, "b/new", True, "a/old")], NOW) == [
        Notice("delete", "/w/a/old", "/w", "a/old", True, IN_MOVED_FROM | IN_ISDIR, NOW),
        Notice("update", "/w/b/new", "/w", "b/new", True, IN_MOVED_TO | IN_ISDIR, NOW),
    ]


def test_rename_without_source_is_only_the_update() -> None:
    assert notices_for("/w", [Event(RENAME, "new", True, None)], NOW) == [
        Notice("update", "/w/new", "/w", "new", True, IN_MOVED_TO | IN_ISDIR, NOW)
    ]


def test_notices_keep_the_order_of_the_events() -> None:
    events = [Event(UPDATE, "b"), Event(DELETE, "a"), Event(FULL, ""), Event(UPDATE, "c")]
    assert [(n.kind, n.rel) for n in notices_for("/w", events, NOW)] == [
        ("update", "b"), ("delete", "a"), ("update", "c")
    ]


def test_update_of_the_root_itself_is_the_root_path() -> None:
    (only,) = notices_for("/w", [Event(UPDATE, "", True)], NOW)
    assert (only.path, only.rel) == ("/w", "")


@pytest.mark.parametrize("rel", ["a b/c d.txt", "new\nline", "x/" + CAFE, "图片/é.jpg", "-rf"])
def test_absolute_path_is_root_slash_rel_for_any_name(rel: str) -> None:
    (only,) = notices_for("/srv/w w", [Event(UPDATE, rel)], NOW)
    assert only.path == "/srv/w w/" + rel
    assert only.rel == rel and only.root == "/srv/w w"
    assert os.fsencode(only.path) == b"/srv/w w/" + os.fsencode(rel)


def test_non_utf8_name_keeps_its_exact_bytes() -> None:
    (only,) = notices_for("/w", [Event(DELETE, CAFE)], NOW)
    assert os.fsencode(only.path) == b"/w/caf\xe9"


# --- record and the socket plugin's payloads ---------------------------------------------


def test_record_keys_and_values() -> None:
    got = record(notice("/w/d", kind="delete", is_dir=True))
    assert got == {"kind": "delete", "path": "/w/d", "is_dir": True, "time": NOW}


def test_record_of_a_non_utf8_path_has_its_bytes_in_base64() -> None:
    got = record(notice("/w/" + CAFE))
    assert set(got) == {"kind", "path", "is_dir", "time", "path_b64"}
    assert got["path"] == "/w/caf\ufffd"
    assert base64.b64decode(got["path_b64"]) == b"/w/caf\xe9"


@pytest.mark.parametrize("name", ["é", "图片", "plain", "new\nline"])
def test_record_of_a_utf8_path_has_no_base64(name: str) -> None:
    got = record(notice("/w/" + name))
    assert "path_b64" not in got
    assert got["path"] == "/w/" + name


def test_json_line_is_one_line_of_utf8_json() -> None:
    for name in ["é", "图片"]:
        line = json_line(notice("/w/" + name))
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert ("/w/" + name).encode("utf-8") in line
        assert b"\\u" not in line
        assert json.loads(line) == record(notice("/w/" + name))


def test_json_line_of_a_name_with_a_newline_stays_one_line() -> None:
    line = json_line(notice("/w/a\nb"))
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert json.loads(line)["path"] == "/w/a\nb"


def test_json_line_of_a_non_utf8_path() -> None:
    line = json_line(notice("/w/" + CAFE))
    line.decode("utf-8")  # valid UTF-8 whatever the name
    got = json.loads(line)
    assert got["path"] == "/w/caf\ufffd"
    assert base64.b64decode(got["path_b64"]) == b"/w/caf\xe9"


def test_sersync_payload_is_the_bare_path_bytes() -> None:
    assert sersync_payload(notice("/w/" + CAFE)) == b"/w/caf\xe9"
    assert sersync_payload(notice("/w/a b\nc", kind="delete")) == b"/w/a b\nc"


# --- command: argv ------------------------------------------------------------------------


def command_settings(prefix: str, suffix: str = "", includes: tuple[str, ...] = (),
                     ignore_error: bool = False, timeout: float = 10.0) -> CommandSettings:
    return CommandSettings(tuple(shlex.split(prefix)), tuple(shlex.split(suffix)),
                           ignore_error, includes, timeout)


def test_command_argv_is_prefix_path_suffix() -> None:
    settings = command_settings("/bin/echo -n", "x y")
    assert command_argv(settings, "/w/a.txt") == [b"/bin/echo", b"-n", b"/w/a.txt", b"x", b"y"]


@pytest.mark.parametrize("name", [
    "a b.txt", "a;touch X;b.php", "$(touch X)", "`touch X`", "new\nline", "-rf", "--help",
    "'quoted\"", "*", CAFE,
])
def test_command_argv_keeps_the_path_one_argument(name: str) -> None:
    argv = command_argv(command_settings("/bin/echo -n", "x y"), "/w/" + name)
    assert argv == [b"/bin/echo", b"-n", b"/w/" + os.fsencode(name), b"x", b"y"]


def test_command_argv_of_a_leading_dash_path() -> None:
    # A relative path is never given, but the path is passed through untouched whatever it is.
    argv = command_argv(command_settings("/bin/rm"), "-rf")
    assert argv == [b"/bin/rm", b"-rf"]


def test_command_argv_with_a_quoted_prefix() -> None:
    settings = command_settings('"/opt/my tool" --flag', "'last arg'")
    assert command_argv(settings, "/w/f") == [b"/opt/my tool", b"--flag", b"/w/f", b"last arg"]


def test_command_wanted_matches_includes_in_full_on_the_absolute_path() -> None:
    plugin = CommandPlugin(command_settings("/bin/true", includes=(r"(.*)\.php", r"(.*)\.sh")))
    assert plugin.wanted("/w/a.php")
    assert plugin.wanted("/w/d/run.sh")
    assert not plugin.wanted("/w/a.php.bak")
    assert not plugin.wanted("/w/a.txt")


def test_command_wanted_is_anchored_at_the_start_too() -> None:
    plugin = CommandPlugin(command_settings("/bin/true", includes=(r"a\.php",)))
    assert not plugin.wanted("/w/a.php")  # the whole absolute path must match
    assert CommandPlugin(command_settings("/bin/true", includes=(r"/w/a\.php",))).wanted(
        "/w/a.php")


def test_command_without_includes_wants_everything() -> None:
    plugin = CommandPlugin(command_settings("/bin/true"))
    for path in ["/w/a.php", "/w/a.php.bak", "/w/" + CAFE, "/w/a\nb", "/w"]:
        assert plugin.wanted(path)


# --- command: running a real program -------------------------------------------------------

# Appends the repr of its argv (as bytes, after the output file) and its environment's event
# variables to the file named by its first argument: one line per run.
RECORDER = (
    "import os, sys\n"
    "args = [os.fsencode(a) for a in sys.argv[2:]]\n"
    "env = (os.environ.get('SERSYNCPY_EVENT'), os.environ.get('SERSYNCPY_ISDIR'))\n"
    "with open(sys.argv[1], 'a') as out:\n"
    "    out.write(repr((args, env)) + '\\n')\n"
)


def recorder(out: Path, suffix: tuple[str, ...] = (), includes: tuple[str, ...] = (),
             ignore_error: bool = False) -> CommandSettings:
    return CommandSettings((sys.executable, "-c", RECORDER, str(out)), suffix, ignore_error,
                           includes, 10.0)


def runs(out: Path) -> list:
    if not out.exists():
        return []
    return [ast.literal_eval(line) for line in out.read_text().splitlines()]


def test_command_runs_the_program_with_the_path_as_one_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "argv.txt"
    plugin = CommandPlugin(recorder(out, suffix=("x y", "z")))
    name = "a;touch X;b.php"
    plugin.deliver([notice(f"{tmp_path}/{name}"), notice(f"{tmp_path}/$(touch Y)`touch Z`")])
    assert runs(out) == [
        ([os.fsencode(f"{tmp_path}/{name}"), b"x y", b"z"], ("update", "0")),
        ([os.fsencode(f"{tmp_path}/$(touch Y)`touch Z`"), b"x y", b"z"], ("update", "0")),
    ]
    assert sorted(os.listdir(tmp_path)) == ["argv.txt"]  # no X, Y or Z anywhere


def test_command_passes_hostile_bytes_and_the_event(tmp_path: Path) -> None:
    out = tmp_path / "argv.txt"
    plugin = CommandPlugin(recorder(out))
    plugin.deliver([
        notice("/w/" + CAFE + " new\nline", kind="delete"),
        notice("/w/-rf", kind="update", is_dir=True),
    ])
    assert runs(out) == [
        ([b"/w/caf\xe9 new\nline"], ("delete", "0")),
        ([b"/w/-rf"], ("update", "1")),
    ]


def test_command_runs_only_for_included_paths(tmp_path: Path) -> None:
    out = tmp_path / "argv.txt"
    plugin = CommandPlugin(recorder(out, includes=(r"(.*)\.php",)))
    plugin.deliver([notice("/w/a.php"), notice("/w/a.php.bak"), notice("/w/b.txt"),
                    notice("/w/d/c.php", kind="delete")])
    assert [args for args, _ in runs(out)] == [[b"/w/a.php"], [b"/w/d/c.php"]]


FAILING = "import sys; sys.stderr.write('first\\nboom here\\n'); sys.exit(3)"


# Log text kept in the command tests below: a command's failure is only logged (deliver()
# returns nothing, no counter has it), with the command's own stderr, which is the product.


def test_command_failure_is_logged_as_error(caplog: pytest.LogCaptureFixture) -> None:
    plugin = CommandPlugin(CommandSettings((sys.executable, "-c", FAILING), (), False, (), 10.0))
    with caplog.at_level(logging.DEBUG, logger="sersyncpy.plugins.command"):
        plugin.deliver([notice("/w/a"), notice("/w/b")])  # does not raise: it already ran
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    message = errors[0].getMessage()
    assert "exit 3" in message and "boom here" in message and "'/w/a'" in message
    assert "'/w/b'" in errors[1].getMessage()


def test_command_failure_with_ignore_error_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = CommandPlugin(CommandSettings((sys.executable, "-c", FAILING), (), True, (), 10.0))
    with caplog.at_level(logging.DEBUG, logger="sersyncpy.plugins.command"):
        plugin.deliver([notice("/w/a")])
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("exit 3" in r.getMessage() for r in caplog.records)  # still there, at DEBUG


def test_command_missing_program_is_logged_and_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "no such program")
    plugin = CommandPlugin(CommandSettings((missing,), (), True, (), 10.0))
    with caplog.at_level(logging.DEBUG, logger="sersyncpy.plugins.command"):
        plugin.deliver([notice("/w/a"), notice("/w/b")])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "cannot run" in errors[0] and "No such file or directory" in errors[0]
    assert "no such program" in errors[0]


def test_command_timeout_kills_the_program(caplog: pytest.LogCaptureFixture) -> None:
    sleeper = (sys.executable, "-c", "import time; time.sleep(60)")
    plugin = CommandPlugin(CommandSettings(sleeper, (), False, (), 0.5))
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="sersyncpy.plugins.command"):
        plugin.deliver([notice("/w/a")])
    assert time.monotonic() - started < 10
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "killed after 0.5 s" in errors[0]
    # The leak guard checks that the killed child was also waited for.


# --- command: a prefix that runs what was uploaded ------------------------------------------


def runs_file(program: str, noun: str = "script") -> str:
    article = "an" if program[0] in "aeiou" else "a"
    return f"runs each changed file as {article} {program} {noun}"


def runs_name(program: str) -> str:
    return f"runs the name of each changed path as {program} code"


@pytest.mark.parametrize(("prefix", "expected"), [
    # The changed file is the script: its content runs.
    ("/bin/sh", runs_file("/bin/sh")),
    ("sh -e", runs_file("sh")),
    ("/usr/bin/bash -o pipefail +x --norc", runs_file("/usr/bin/bash")),
    ("dash", runs_file("dash")),
    ("ash", runs_file("ash")),
    ("zsh", runs_file("zsh")),
    ("ksh", runs_file("ksh")),
    ("mksh", runs_file("mksh")),
    ("csh", runs_file("csh")),
    ("tcsh", runs_file("tcsh")),
    ("fish", runs_file("fish")),
    ("sh -", runs_file("sh")),  # "-" ends a shell's options
    ("sh --", runs_file("sh")),
    ("/bin/busybox sh", runs_file("/bin/busybox sh")),
    ("busybox ash -e", runs_file("busybox ash")),
    ("python", runs_file("python")),
    ("python3 -u -W ignore", runs_file("python3")),
    ("/usr/bin/python3.11 -X dev", runs_file("/usr/bin/python3.11")),
    ("pypy3", runs_file("pypy3")),
    ("perl -w -I /opt/lib", runs_file("perl")),
    ("perl -x", runs_file("perl")),
    ("ruby", runs_file("ruby")),
    ("ruby -r", runs_file("ruby")),  # the changed file is required
    ("php", runs_file("php")),
    ("php8.2 -d display_errors=1 -f", runs_file("php8.2")),
    ("node", runs_file("node")),
    ("nodejs --require", runs_file("nodejs")),
    ("lua5.4 -e x=1", runs_file("lua5.4")),  # lua runs its script after -e
    ("luajit", runs_file("luajit")),
    ("tclsh8.6 -encoding utf-8", runs_file("tclsh8.6")),
    ("awk -f", runs_file("awk", "program")),
    ("/usr/bin/gawk -v x=1 --file", runs_file("/usr/bin/gawk", "program")),
    ("sed -n -f", runs_file("sed")),
    # ... behind env.
    ("/usr/bin/env bash", runs_file("bash")),
    ("env -i PATH=/usr/bin perl", runs_file("perl")),
    ("env -u HOME -S 'python3 -u'", runs_file("python3")),
    ("env --split-string=node", runs_file("node")),
    ("env -- ruby", runs_file("ruby")),
    ("env busybox sh", runs_file("busybox sh")),
    # The changed path's name is the code.
    ("/bin/sh -c", runs_name("/bin/sh")),
    ("bash -ec", runs_name("bash")),
    ("fish -c", runs_name("fish")),
    ("python3 -Bc", runs_name("python3")),
    ("perl -lne", runs_name("perl")),
    ("perl -l0e", runs_name("perl")),
    ("ruby -e", runs_name("ruby")),
    ("php -r", runs_name("php")),
    ("node --eval", runs_name("node")),
    ("awk", runs_name("awk")),
    ("gawk -i inplace", runs_name("gawk")),
    ("sed -i", runs_name("sed")),
    # The prefix names the script or passes the code: the path is only an argument.
    ("/usr/bin/logger -t sersyncpy-command --", None),
    ("/bin/sh /usr/local/bin/purge", None),
    ("/bin/sh -c 'purge \"$1\"' sh", None),
    ("/bin/bash -ec 'purge \"$1\"' sh", None),
    ("bash -o errexit /usr/local/bin/purge", None),
    ("sh - /usr/local/bin/purge", None),
    ("sh -s", None),  # the script is stdin (/dev/null), the path $1
    ("sh -n", None),  # read, never run
    ("python3 /opt/purge.py", None),
    ("python3 -c 'import sys; print(sys.argv[1])'", None),
    ("python3 -cimport\\ sys", None),
    ("python3 -m purge", None),
    ("python3 -", None),
    ("perl -lne print", None),
    ("perl -Mstrict /opt/purge.pl", None),
    ("ruby -r json /opt/purge.rb", None),
    ("php -r 'echo $argv[1];'", None),
    ("php -f /opt/purge.php", None),
    ("php -l", None),
    ("node --require=./x.js /opt/purge.js", None),
    ("node --check", None),
    ("lua -e x=1 /opt/purge.lua", None),
    ("tclsh -encoding utf-8 /opt/purge.tcl", None),
    ("awk '{print}'", None),
    ("gawk -e 'BEGIN { print ARGV[1] }'", None),
    ("sed -e s/a/b/", None),
    ("sed -i.bak s/a/b/", None),
    ("sed --sandbox", None),
    ("/usr/bin/env purge-cache", None),
    ("env -S 'python3 /opt/purge.py'", None),
    ("busybox rm", None),
    ("busybox", None),
    ("ssh -p 22 backup purge", None),
    ("/usr/local/bin/purge.sh", None),
    ("shred -u", None),
    ("php-fpm", None),
])
def test_interpreter_hazard(prefix: str, expected: Optional[str]) -> None:
    assert interpreter_hazard(tuple(shlex.split(prefix))) == expected


def test_command_plugin_warns_once_about_a_shell_prefix(caplog: pytest.LogCaptureFixture,
                                                        tmp_path: Path) -> None:
    with caplog.at_level(logging.DEBUG, logger="sersyncpy.plugins.command"):
        CommandPlugin(command_settings("/bin/sh"))
        CommandPlugin(recorder(tmp_path / "argv.txt"))  # python -c CODE: the path is argv[1]
    # Log text kept: the WARNING, said once, is the product.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "command: prefix=/bin/sh runs each changed file as a /bin/sh script: ")


def test_the_shipped_sample_command_runs_no_uploaded_file(tmp_path: Path) -> None:
    text = REPO_CONFXML.read_bytes().replace(b'watch="/opt/tongbu"',
                                             b'watch="%s"' % os.fsencode(tmp_path))
    cfg = config.parse(text, str(REPO_CONFXML))
    settings = config.plugin_settings(cfg, "command", True)
    assert interpreter_hazard(settings.prefix) is None
    assert settings.prefix[0] == "/usr/bin/logger"  # the prefix the test above knows
    assert interpreter_hazard(("/bin/sh",))  # sersync 2.5's sample


# --- refreshCDN ---------------------------------------------------------------------------

WATCH = "/data0/htdocs/cms.xoyo.com/site"
MATCH = "cms.xoyo.com/site([/a-zA-Z0-9]*).xoyo.com/images"
API = "http://ccms.chinacache.com:80/index.jsp?user=u&pswd=p&ok=ok"
API2 = API.replace("pswd=p", "pswd=hunter2")


def cdn(regex: bool = False, match: str = MATCH, username: str = "u", password: str = "p",
        watch: str = WATCH, method: str = "HEAD") -> CdnSettings:
    return CdnSettings(watch=watch, domain="ccms.chinacache.com", port=80, username=username,
                       password=password, base="http://pic.xoyo.com/cms", regex=regex,
                       match=match, method=method)


def test_cdn_regex_target_is_base_group_and_rest() -> None:
    found = notice(WATCH + "/jx3.xoyo.com/images/a.jpg", root=WATCH)
    assert refresh_target(cdn(regex=True), found) == "http://pic.xoyo.com/cms/jx3/a.jpg"
    assert request_url(cdn(regex=True), found) == API + "&urls=http://pic.xoyo.com/cms/jx3/a.jpg"


def test_cdn_regex_without_a_match_gives_nothing() -> None:
    other = notice(WATCH + "/other/a.jpg", root=WATCH)
    assert refresh_target(cdn(regex=True), other) is None
    assert request_url(cdn(regex=True), other) is None


def test_cdn_regex_without_a_group_is_base_and_what_follows_the_match() -> None:
    found = notice(WATCH + "/sub/a.jpg", root=WATCH)
    settings = cdn(regex=True, match=r"cms\.xoyo\.com/site")
    assert refresh_target(settings, found) == "http://pic.xoyo.com/cms/sub/a.jpg"


def test_cdn_regex_group_that_did_not_take_part_is_empty() -> None:
    found = notice(WATCH + "/a.jpg", root=WATCH)
    settings = cdn(regex=True, match=r"site(/x)?")
    assert refresh_target(settings, found) == "http://pic.xoyo.com/cms/a.jpg"


def test_cdn_regex_uses_the_first_match() -> None:
    found = notice("/data0/htdocs/cms.xoyo.com/site/a.xoyo.com/images/b.xoyo.com/images/c.jpg")
    assert refresh_target(cdn(regex=True), found) == (
        "http://pic.xoyo.com/cms/a/b.xoyo.com/images/c.jpg"
    )


def test_cdn_plain_target_is_base_and_path_below_watch() -> None:
    assert refresh_target(cdn(), notice(WATCH + "/sub/a.jpg", root=WATCH)) == (
        "http://pic.xoyo.com/cms/sub/a.jpg"
    )
    assert refresh_target(cdn(watch=WATCH + "/"), notice(WATCH + "/sub/a.jpg", root=WATCH)) == (
        "http://pic.xoyo.com/cms/sub/a.jpg"
    )
    assert refresh_target(cdn(), notice(WATCH, root=WATCH, is_dir=True)) == (
        "http://pic.xoyo.com/cms"
    )


def test_cdn_plain_target_outside_the_watch_is_below_the_root() -> None:
    # Sync mode: the notice comes from a <sersync> localpath, not the plugin's own.
    outside = notice("/srv/www/sub/a.jpg", root="/srv/www")
    assert refresh_target(cdn(), outside) == "http://pic.xoyo.com/cms/sub/a.jpg"
    # A sibling whose name starts like the watch is outside it too.
    sibling = notice(WATCH + "2/x.jpg", root=WATCH + "2")
    assert refresh_target(cdn(), sibling) == "http://pic.xoyo.com/cms/x.jpg"
    root = notice("/srv/www", root="/srv/www", is_dir=True)
    assert refresh_target(cdn(), root) == "http://pic.xoyo.com/cms"


def test_cdn_request_url_for_a_file_and_a_directory() -> None:
    file_ = notice(WATCH + "/sub/a.jpg", root=WATCH)
    directory = notice(WATCH + "/sub", root=WATCH, is_dir=True)
    assert request_url(cdn(), file_) == API + "&urls=http://pic.xoyo.com/cms/sub/a.jpg"
    assert request_url(cdn(), directory) == API + "&dirs=http://pic.xoyo.com/cms/sub/"
    deleted = notice(WATCH + "/sub/a.jpg", root=WATCH, kind="delete")
    assert request_url(cdn(), deleted) == API + "&urls=http://pic.xoyo.com/cms/sub/a.jpg"


@pytest.mark.parametrize(("name", "encoded"), [
    ("a b.jpg", "a%20b.jpg"),
    ("a&urls=x.jpg", "a%26urls%3Dx.jpg"),
    ("a#b?c+d.jpg", "a%23b%3Fc%2Bd.jpg"),
    ("100%.jpg", "100%25.jpg"),
    ("é.jpg", "%C3%A9.jpg"),
    ("图片.jpg", "%E5%9B%BE%E7%89%87.jpg"),
    (CAFE + ".jpg", "caf%E9.jpg"),
    ("a:b~c_d-e.jpg", "a:b~c_d-e.jpg"),
])
def test_cdn_request_url_percent_encodes_all_but_colon_and_slash(name: str,
                                                                 encoded: str) -> None:
    found = notice(WATCH + "/sub/" + name, root=WATCH)
    assert request_url(cdn(), found) == API + "&urls=http://pic.xoyo.com/cms/sub/" + encoded


def test_cdn_request_url_encodes_user_and_password_fully() -> None:
    settings = cdn(username="a b/c:d", password="p&w=1/é")
    url = request_url(settings, notice(WATCH + "/a.jpg", root=WATCH))
    assert url == ("http://ccms.chinacache.com:80/index.jsp?user=a%20b%2Fc%3Ad"
                   "&pswd=p%26w%3D1%2F%C3%A9&ok=ok&urls=http://pic.xoyo.com/cms/a.jpg")


def test_whatsup_keeps_the_whatsup_line() -> None:
    reply = "HTTP/1.0 200 OK\r\nServer: x\r\nwhatsup: succeed\r\nmore\r\n"
    assert whatsup(reply) == "whatsup: succeed"
    assert whatsup("head\nwhatsup: failed, bad user") == "whatsup: failed, bad user"


def test_whatsup_without_whatsup_is_the_text_on_one_line() -> None:
    assert whatsup("HTTP/1.0 500 Oops\r\n\r\n  <b>error</b>\n") == "HTTP/1.0 500 Oops <b>error</b>"
    long = whatsup("word " * 200)
    assert len(long) == 300 and "\n" not in long and long.startswith("word word")


def test_whatsup_is_one_short_line_however_long_the_reply() -> None:
    assert whatsup("whatsup: " + "x" * 70000) == "whatsup: " + "x" * 291


@pytest.mark.parametrize("url, shown, target, host", [
    ("http://u:p%40ss@h:8080/x/y?token=SECRET#frag", "http://h:8080/x/y", "/x/y?token=SECRET",
     "h:8080"),
    ("https://[::1]/hook", "https://[::1]/hook", "/hook", "[::1]"),
    ("http://h", "http://h", "/", "h"),
    ("http://H:80/a b?q=é x", "http://H:80/a b", "/a%20b?q=%C3%A9%20x", "h"),
    ("http://bücher.de/x", "http://bücher.de/x", "/x", "xn--bcher-kva.de"),
])
def test_url_shows_scheme_host_port_and_path_only(url: str, shown: str, target: str,
                                                  host: str) -> None:
    parsed = Url.parse(url)
    assert (parsed.shown, parsed.target, parsed.host_header) == (shown, target, host)
    assert "SECRET" not in repr(parsed) and "p%40ss" not in repr(parsed)


def test_url_user_and_password_are_basic_auth_and_secrets() -> None:
    parsed = Url.parse("http://u:p%40ss@h/x?a=1&token=SECRET&flag")
    assert parsed.authorization == "Basic " + base64.b64encode(b"u:p@ss").decode()
    assert {"p%40ss", "p@ss", "SECRET", "flag"} <= set(parsed.secrets)
    assert "1" not in parsed.secrets  # too short to be a secret, and too common to hide
    # as requests did: a user without a password sends no credentials
    assert Url.parse("http://u@h/").authorization is None
    assert Url.parse("http://h/").authorization is None


@pytest.fixture
def servers():
    """servers(server) -> server, stopped at teardown."""
    started = []

    def keep(server):
        started.append(server)
        return server

    yield keep
    for server in reversed(started):
        server.stop()


def local_cdn(port: int, **kwargs) -> CdnSettings:
    """cdn(...) asking a server of ours on 127.0.0.1 instead of ChinaCache."""
    return dataclasses.replace(cdn(**kwargs), domain="127.0.0.1", port=port)


def seen(server: HttpRecorder) -> list[tuple[str, str, str]]:
    return [(r.method, r.path, r.query) for r in list(server.requests)]


def test_cdn_deliver_requests_each_url_and_logs_the_reply(
    servers, caplog: pytest.LogCaptureFixture,
) -> None:
    server = servers(HttpRecorder(answers=[(200, b"HTTP/1.0 200 OK\nwhatsup: succeed\n"),
                                           (200, b"")]))
    plugin = CdnPlugin(local_cdn(server.port, method="GET", password="hunter2"))
    with caplog.at_level(logging.INFO, logger="sersyncpy.plugins.refreshcdn"):
        plugin.deliver([notice(WATCH + "/a.jpg", root=WATCH),
                        notice(WATCH + "/d", root=WATCH, is_dir=True)])
    plugin.close()
    query = "user=u&pswd=hunter2&ok=ok"
    assert seen(server) == [
        ("GET", "/index.jsp", query + "&urls=http://pic.xoyo.com/cms/a.jpg"),
        ("GET", "/index.jsp", query + "&dirs=http://pic.xoyo.com/cms/d/"),
    ]
    assert server.requests[0].headers["Host"] == f"127.0.0.1:{server.port}"
    # Log text kept: each reply is logged, as sersync did (its only trace).
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [
        "refreshCDN: urls http://pic.xoyo.com/cms/a.jpg: HTTP 200 whatsup: succeed",
        "refreshCDN: dirs http://pic.xoyo.com/cms/d: HTTP 200",
    ]


def test_cdn_deliver_skips_paths_the_regex_does_not_match(servers) -> None:
    server = servers(HttpRecorder())
    plugin = CdnPlugin(local_cdn(server.port, regex=True))
    plugin.deliver([notice(WATCH + "/x.jpg", root=WATCH),
                    notice(WATCH + "/jx3.xoyo.com/images/a.jpg", root=WATCH)])
    plugin.close()
    assert seen(server) == [
        ("HEAD", "/index.jsp", "user=u&pswd=p&ok=ok&urls=http://pic.xoyo.com/cms/jx3/a.jpg")
    ]


def test_cdn_deliver_retries_server_errors_and_says_how_many_arrived(servers) -> None:
    server = servers(HttpRecorder(answers=[(200, b""), (503, b"")]))
    plugin = CdnPlugin(local_cdn(server.port))
    with pytest.raises(DeliveryError) as caught:
        plugin.deliver([notice(WATCH + "/a", root=WATCH), notice(WATCH + "/b", root=WATCH),
                        notice(WATCH + "/c", root=WATCH)])
    plugin.close()
    assert caught.value.done == 1
    assert caught.value.reason == (f"http://127.0.0.1:{server.port}/index.jsp: HTTP 503, "
                                   "refreshing urls http://pic.xoyo.com/cms/b")


def test_cdn_deliver_logs_a_refusal_as_error_without_retrying(
    servers, caplog: pytest.LogCaptureFixture,
) -> None:
    password = "s3cr&t/é"
    server = servers(HttpRecorder(answers=[
        (403, "whatsup: bad password s3cr&t/é or s3cr%26t%2F%C3%A9".encode())]))
    plugin = CdnPlugin(local_cdn(server.port, method="GET", password=password))
    with caplog.at_level(logging.INFO, logger="sersyncpy.plugins.refreshcdn"):
        plugin.deliver([notice(WATCH + "/a", root=WATCH), notice(WATCH + "/b", root=WATCH)])
    plugin.close()
    assert len(server.requests) == 2
    # Log text kept: the refusal is only logged (not retried), the password masked in it.
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["refreshCDN: urls http://pic.xoyo.com/cms/a: HTTP 403 whatsup: bad "
                      "password *** or ***"]


def test_cdn_deliver_connection_error_names_no_query() -> None:
    port = free_port()
    plugin = CdnPlugin(local_cdn(port, password="s&cret"))
    with pytest.raises(DeliveryError) as caught:
        plugin.deliver([notice(WATCH + "/a", root=WATCH), notice(WATCH + "/b", root=WATCH)])
    plugin.close()
    assert caught.value.done == 0
    assert caught.value.reason == (f"http://127.0.0.1:{port}/index.jsp: Connection refused "
                                   "(connecting), refreshing urls http://pic.xoyo.com/cms/a")


def test_cdn_retry_status_set() -> None:
    assert {408, 429, 500, 502, 503, 599} <= refreshcdn.RETRY_STATUS
    assert not {200, 301, 400, 403, 404} & refreshcdn.RETRY_STATUS


# --- http -------------------------------------------------------------------------------


def test_form_body_of_a_file() -> None:
    found = notice("/w/d/a.txt")
    assert form_body(found) == (
        b"watchroot=%2Fw&isdir=0&inotifyPath=%2Fw%2Fd%2Fa.txt&mask=" + str(IN_CLOSE_WRITE).encode()
    )


def test_form_body_of_a_directory() -> None:
    found = notice("/w/d", kind="delete", is_dir=True)
    assert form_body(found) == (
        b"watchroot=%2Fw&isdir=1&inotifyPath=%2Fw%2Fd&mask=" + str(IN_DELETE | IN_ISDIR).encode()
    )
    assert IN_DELETE | IN_ISDIR == 1073742336


def test_form_body_encodes_spaces_non_ascii_and_non_utf8() -> None:
    found = notice("/w w/a b&c=é" + CAFE, root="/w w")
    body = form_body(found)
    assert body == (b"watchroot=%2Fw+w&isdir=0&inotifyPath=%2Fw+w%2Fa+b%26c%3D%C3%A9caf%E9"
                    b"&mask=8")
    fields = dict(field.split(b"=") for field in body.split(b"&"))
    assert unquote_to_bytes(fields[b"inotifyPath"].replace(b"+", b" ")) == (
        b"/w w/a b&c=\xc3\xa9caf\xe9"
    )


def test_json_body_lists_the_changes() -> None:
    notices = [notice("/w/a"), notice("/w/" + CAFE, kind="delete", is_dir=True)]
    got = json.loads(json_body(notices))
    assert got == {"changes": [
        {"kind": "update", "path": "/w/a", "is_dir": False, "time": NOW, "watchroot": "/w",
         "mask": IN_CLOSE_WRITE},
        {"kind": "delete", "path": "/w/caf\ufffd", "is_dir": True, "time": NOW,
         "watchroot": "/w", "mask": IN_DELETE | IN_ISDIR,
         "path_b64": base64.b64encode(b"/w/caf\xe9").decode()},
    ]}


def test_json_body_is_utf8_without_escapes() -> None:
    body = json_body([notice("/图片/é", root="/图片")])
    assert "/图片/é".encode() in body and b"\\u" not in body


def http_plugin(server: HttpRecorder, fmt: str = "form") -> HttpPlugin:
    return HttpPlugin(HttpSettings(watch="/w", url=f"http://127.0.0.1:{server.port}/x",
                                   format=fmt))


def test_http_form_posts_one_change_each(servers) -> None:
    server = servers(HttpRecorder(answers=[(200, b""), (204, b"")]))
    plugin = http_plugin(server)
    notices = [notice("/w/a"), notice("/w/b", kind="delete")]
    plugin.deliver(notices)
    plugin.close()
    assert [(r.method, r.path, r.body, r.headers["Content-Type"]) for r in server.requests] == [
        ("POST", "/x", form_body(n), "application/x-www-form-urlencoded") for n in notices
    ]


def test_http_json_posts_one_batch(servers) -> None:
    server = servers(HttpRecorder())
    plugin = http_plugin(server, "json")
    notices = [notice("/w/a"), notice("/w/b", kind="delete")]
    plugin.deliver(notices)
    plugin.close()
    [request] = server.requests
    assert (request.method, request.path, request.body) == ("POST", "/x", json_body(notices))
    assert request.headers["Content-Type"] == "application/json"


def test_http_server_error_says_how_many_arrived(servers) -> None:
    server = servers(HttpRecorder(answers=[(200, b""), (200, b""), (502, b"")]))
    plugin = http_plugin(server)
    with pytest.raises(DeliveryError) as caught:
        plugin.deliver([notice("/w/a"), notice("/w/b"), notice("/w/c"), notice("/w/d")])
    plugin.close()
    assert caught.value.done == 2
    assert caught.value.reason == f"http://127.0.0.1:{server.port}/x: HTTP 502"


def test_http_connection_error_in_json_mode_delivers_nothing() -> None:
    port = free_port()
    plugin = HttpPlugin(HttpSettings(watch="/w", url=f"http://127.0.0.1:{port}/x",
                                     format="json"))
    with pytest.raises(DeliveryError) as caught:
        plugin.deliver([notice("/w/a"), notice("/w/b")])
    plugin.close()
    assert caught.value.done == 0
    assert caught.value.reason == f"http://127.0.0.1:{port}/x: Connection refused (connecting)"


@pytest.mark.parametrize("status", [400, 302])
def test_http_refusal_or_redirect_is_logged_not_retried(
    servers, caplog: pytest.LogCaptureFixture, status: int,
) -> None:
    server = servers(HttpRecorder(answers=[(status, b"bad\n  request"), (200, b"")]))
    plugin = http_plugin(server)
    with caplog.at_level(logging.INFO, logger="sersyncpy.plugins.http"):
        plugin.deliver([notice("/w/a"), notice("/w/b")])
    plugin.close()
    assert [r.path for r in server.requests] == ["/x", "/x"]  # no redirect followed
    # Log text kept: the refusal is only logged (not retried), with the server's answer.
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"http: http://127.0.0.1:{server.port}/x refused 1 change(s): "
                      f"HTTP {status} bad request"]


def test_http_retry_status_set() -> None:
    assert {408, 429, 500, 503} <= httpmod.RETRY_STATUS
    assert not {200, 204, 400, 404} & httpmod.RETRY_STATUS


def test_http_keeps_its_connection_and_takes_another_once_the_server_closed_it(
    servers,
) -> None:
    server = servers(HttpRecorder(idle=0.5))
    plugin = http_plugin(server)
    plugin.deliver([notice("/w/a"), notice("/w/b")])
    wait_until(lambda: server.closed == 1, timeout=5, message="the server kept it open")
    plugin.deliver([notice("/w/c")])  # not an error: the closed connection is not used
    plugin.close()
    peers = [r.peer for r in server.requests]
    assert peers[0] == peers[1] != peers[2]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (files)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_http_over_https_checks_the_certificate(servers, certificate: tuple[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    server = servers(HttpRecorder(tls=certificate))
    url = f"https://127.0.0.1:{server.port}/x"
    untrusting = HttpPlugin(HttpSettings(watch="/w", url=url, format="form"))
    with pytest.raises(DeliveryError) as caught:
        untrusting.deliver([notice("/w/a")])
    untrusting.close()
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.reason and not server.requests
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])  # what the default context trusts
    plugin = HttpPlugin(HttpSettings(watch="/w", url=url, format="form"))
    plugin.deliver([notice("/w/a"), notice("/w/b")])
    plugin.close()
    assert [r.body for r in server.requests] == [form_body(notice("/w/a")),
                                                 form_body(notice("/w/b"))]
    assert server.requests[0].peer == server.requests[1].peer  # one connection, kept


def test_https_handshake_ends_at_the_deadline(servers) -> None:
    server = servers(TrickleServer())  # takes the connection, never says a TLS word
    plugin = HttpPlugin(HttpSettings(watch="/w", url=f"https://127.0.0.1:{server.port}/x",
                                     format="form"), Limits(deadline=0.5))
    with pytest.raises(DeliveryError) as caught:
        plugin.deliver([notice("/w/a")])
    plugin.close()
    assert caught.value.reason.endswith("no complete reply within 0.5 s (in the TLS handshake)")


# --- http and refreshCDN against bad servers: deadline, cap, secrets -----------------------

SECRET = "tok-S3CRET-4711"  # the http url's query token
URL_PASSWORD = "pw-S3CRET-0815"  # the http url's user:password@
CDN_PASSWORD = "cdn-S3CRET&+/ é%"


def plugin_for(name: str, port: int, limits: Limits = DEFAULT_LIMITS) -> Plugin:
    """The http plugin (its url with a token and a password) or refreshCDN (GET), asking
    127.0.0.1:port."""
    if name == "http":
        url = f"http://hook:{URL_PASSWORD}@127.0.0.1:{port}/hook?site=img&token={SECRET}#f"
        return HttpPlugin(HttpSettings(watch="/w", url=url, format="form"), limits)
    return CdnPlugin(local_cdn(port, method="GET", password=CDN_PASSWORD), limits)


def shown_for(name: str, port: int) -> str:
    return f"http://127.0.0.1:{port}/{'hook' if name == 'http' else 'index.jsp'}"


def a_notice(name: str) -> Notice:
    return notice("/w/a") if name == "http" else notice(WATCH + "/a", root=WATCH)


@pytest.mark.parametrize("part", ["head", "body"])
@pytest.mark.parametrize("name", ["http", "refreshCDN"])
def test_a_trickling_server_ends_the_delivery_at_the_deadline(servers, name: str,
                                                              part: str) -> None:
    # One byte every 0.1 s: each read is quick, and before, each restarted the timeout.
    server = servers(TrickleServer(part, interval=0.1, seconds=8))
    plugin = plugin_for(name, server.port, Limits(deadline=1.0))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        plugin.deliver([a_notice(name)])
    took = time.monotonic() - started
    plugin.close()
    assert took < 1.0 + 0.75, f"the delivery took {took:.1f} s"
    assert caught.value.done == 0
    assert caught.value.reason.startswith(f"{shown_for(name, server.port)}: no complete reply "
                                          "within 1 s")


def test_a_trickling_server_is_tried_again_after_each_deadline(servers, make_runner) -> None:
    server = servers(TrickleServer("body", interval=0.1, seconds=8))
    runner = make_runner(plugin_for("http", server.port, Limits(deadline=0.5)),
                         retry_seconds=60)
    runner.offer([notice("/w/a")])
    runner.start()
    wait_until(lambda: server.connections >= 3, timeout=5)
    finish(runner, 0)
    assert runner.stats.delivered == 0 and runner.stats.failures >= 2
    assert runner.stats.last_error == (f"http://127.0.0.1:{server.port}/hook: no complete "
                                       "reply within 0.5 s (reading the reply)")


def test_a_delivery_outstanding_for_long_is_named_once(
    servers, caplog: pytest.LogCaptureFixture,
) -> None:
    server = servers(TrickleServer("body", interval=0.1, seconds=8))
    plugin = plugin_for("http", server.port, Limits(deadline=1.5, slow=0.5))
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # failed, tried again: still the same stall
            with pytest.raises(DeliveryError):
                plugin.deliver([notice("/w/a")])
    plugin.close()
    # Log text kept: the WARNING, said once, is the product.
    said = [r.getMessage() for r in caplog.records if "in progress" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith(f"http: a delivery to http://127.0.0.1:{server.port}/hook has "
                              "been in progress for ")
    assert said[0].endswith(" s, reading the reply (each request gives up after 1.5 s)")


HUGE = 256 << 20


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("name", ["http", "refreshCDN"])
def test_a_huge_reply_is_read_only_up_to_the_cap(servers, caplog: pytest.LogCaptureFixture,
                                                 name: str, chunked: bool) -> None:
    server = servers(HugeReplyServer(HUGE, chunked))
    plugin = plugin_for(name, server.port)
    with caplog.at_level(logging.INFO):
        plugin.deliver([a_notice(name)])  # a 200: delivered
    plugin.close()
    wait_until(lambda: server.finished == 1, timeout=10, message="the server still sends")
    # What the kernel's socket buffers took before the client hung up, nowhere near all.
    assert server.sent < HUGE // 8, f"the server sent {server.sent} bytes"
    assert all(len(r.getMessage()) < 500 for r in caplog.records)  # kept: no reply floods it


def echo(request: Request) -> bytes:
    """A reply quoting the request, as some error pages do."""
    return (f"whatsup: no. {request.path}?{request.query} "
            f"{request.headers.get('Authorization')}").encode()


def spellings(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


@pytest.mark.parametrize("target", ["refused", "retried", "unreachable"])
@pytest.mark.parametrize("name", ["http", "refreshCDN"])
def test_url_secrets_are_in_no_log_record(servers, make_runner,
                                          caplog: pytest.LogCaptureFixture, name: str,
                                          target: str) -> None:
    port = free_port()
    if target != "unreachable":
        server = servers(HttpRecorder(status=403 if target == "refused" else 503, reply=echo))
        port = server.port
    runner = make_runner(plugin_for(name, port, Limits(deadline=2.0, slow=0.0)),
                         retry_seconds=60)
    runner.offer([a_notice(name)])
    with caplog.at_level(logging.DEBUG):
        runner.start()
        if target == "refused":
            wait_until(lambda: runner.stats.delivered == 1, timeout=5)
        else:
            wait_until(lambda: runner.stats.failures >= 2, timeout=5)
        finish(runner, 0)
    # Log text kept: what the log shows of the target, and that no secret is in it.
    assert shown_for(name, port) in caplog.text  # the target is named, in these words
    if target != "unreachable":
        sent = server.requests[0]
        assert (SECRET in sent.query) if name == "http" else ("pswd=cdn-S3CRET" in sent.query)
    secrets = (spellings(SECRET) | spellings(URL_PASSWORD) |
               {base64.b64encode(f"hook:{URL_PASSWORD}".encode()).decode()}
               if name == "http" else spellings(CDN_PASSWORD))
    for logged in caplog.records:
        for secret in secrets:
            assert secret not in logged.getMessage(), logged.getMessage()
    for secret in secrets:
        assert secret not in caplog.text


# --- build and standalone_roots ------------------------------------------------------------


def test_build_gives_each_plugin_by_name() -> None:
    settings = {
        "command": command_settings("/bin/true"),
        "socket": SocketSettings(watch="/w", ip="127.0.0.1", port=9, format="sersync"),
        "refreshCDN": cdn(),
        "http": HttpSettings(watch="/w", url="http://h/", format="form"),
    }
    kinds = {"command": CommandPlugin, "socket": SocketPlugin, "refreshCDN": CdnPlugin,
             "http": HttpPlugin}
    for name, value in settings.items():
        plugin = build(name, value)
        try:
            assert isinstance(plugin, kinds[name]) and plugin.name == name
            assert plugin.settings is value  # type: ignore[attr-defined]
        finally:
            plugin.close()
    with pytest.raises(ValueError, match="unknown plugin 'mail'"):
        build("mail", cdn())


class _Cfg:
    localpaths = (LocalPath("/a", ()), LocalPath("/b", ()))


def test_standalone_roots() -> None:
    cfg = _Cfg()
    assert standalone_roots(cfg, command_settings("/bin/true")) == ["/a", "/b"]  # type: ignore
    socket_settings = SocketSettings(watch="/s", ip="127.0.0.1", port=9, format="json")
    assert standalone_roots(cfg, socket_settings) == ["/s"]  # type: ignore[arg-type]
    assert standalone_roots(cfg, cdn()) == [WATCH]  # type: ignore[arg-type]


# --- Gate -------------------------------------------------------------------------------


class GateRig:
    """A Gate over roots /r0 (lanes A, B) and /r1 (lane C), collecting what it releases."""

    def __init__(self, limit: int = 1000):
        self.released: list[Notice] = []
        self.drops: list[tuple[int, str]] = []
        self.gate = Gate(["/r0", "/r1"], [["A", "B"], ["C"]], self.released.extend, limit,
                         lambda count, why: self.drops.append((count, why)))

    def record(self, *events: Event, root: int = 0) -> int:
        return self.gate.record(root, list(events))

    def push(self, lane: str, seq: int, *events: Event, root: int = 0) -> list[str]:
        """The lane pushed `events`; returns the rels of what this push released."""
        before = len(self.released)
        self.gate.pushed(root, lane, list(events), seq)
        return [n.rel for n in self.released[before:]]

    def both(self, seq: int, *events: Event) -> list[str]:
        return self.push("A", seq, *events) + self.push("B", seq, *events)


def test_gate_releases_a_notice_once_every_lane_pushed_it() -> None:
    rig = GateRig()
    seq = rig.record(Event(UPDATE, "f"))
    assert rig.gate.waiting() == 1
    assert rig.push("A", seq, Event(UPDATE, "f")) == []
    assert rig.push("A", seq, Event(UPDATE, "f")) == []  # the same lane twice is not both
    assert rig.gate.waiting() == 1
    assert rig.push("B", seq, Event(UPDATE, "f")) == ["f"]
    assert rig.released == [Notice("update", "/r0/f", "/r0", "f", False, IN_CLOSE_WRITE,
                                   rig.released[0].time)]
    assert rig.gate.waiting() == 0
    assert rig.push("A", seq, Event(UPDATE, "f")) == []  # released once only


def test_gate_sequence_numbers_grow() -> None:
    rig = GateRig()
    first = rig.record(Event(UPDATE, "a"))
    second = rig.record()
    third = rig.record(Event(UPDATE, "b"), root=1)
    assert first < second < third


def test_gate_single_lane_root_and_roots_kept_apart() -> None:
    rig = GateRig()
    seq = rig.record(Event(UPDATE, "f"), root=1)
    rig.record(Event(UPDATE, "f"), root=0)
    assert rig.push("C", seq, Event(UPDATE, "f"), root=1) == ["f"]
    assert rig.released[0].path == "/r1/f" and rig.released[0].root == "/r1"
    assert rig.gate.waiting() == 1  # /r0/f still waits for A and B


def test_gate_push_taken_before_the_notice_does_not_count() -> None:
    rig = GateRig()
    early = rig.record(Event(UPDATE, "other"))
    late = rig.record(Event(UPDATE, "f"))
    assert rig.push("A", early, Event(UPDATE, "f")) == []
    assert rig.push("B", late, Event(UPDATE, "f")) == []
    assert rig.push("A", early, Event(FULL, "", True)) == []
    assert rig.push("B", early, Event(FULL, "", True)) == ["other"]  # f is still too new
    assert rig.push("A", late, Event(UPDATE, "f")) == ["f"]


def test_gate_push_of_another_path_does_not_count() -> None:
    rig = GateRig()
    seq = rig.record(Event(UPDATE, "f"))
    assert rig.both(seq, Event(UPDATE, "g"), Event(UPDATE, "f2"), Event(UPDATE, "d/f")) == []
    assert rig.gate.waiting() == 1


@pytest.mark.parametrize("covering", [
    Event(SUBTREE, "d", True),
    Event(FULL, "d", True),
    Event(DELETE, "d", True),
    Event(RENAME, "d", True, "elsewhere"),
])
def test_gate_covering_push_releases_what_is_below(covering: Event) -> None:
    rig = GateRig()
    seq = rig.record(Event(UPDATE, "d/x/y"), Event(UPDATE, "d/z"), Event(UPDATE, "dd/x"),
                     Event(UPDATE, "e"))
    assert rig.both(seq, covering) == ["d/x/y", "d/z"]
    assert rig.gate.waiting() == 2


def test_gate_rename_push_covers_below_its_source_too() -> None:
    rig = GateRig()
    seq = rig.record(Event(UPDATE, "old/x"), Event(UPDATE, "new/y"), Event(UPDATE, "other"))
    assert sorted(rig.both(seq, Event(RENAME, "new", True, "old"))) == ["new/y", "old/x"]
    assert rig.gate.waiting() == 1


def test_gate_full_push_of_the_root_covers_that_root_only() -> None:
    rig = GateRig()
    seq = rig.record(Event(UPDATE, "a"), Event(UPDATE, "b/c"), Event(UPDATE, "", True))
    other = rig.record(Event(UPDATE, "a"), root=1)
    assert rig.both(seq, Event(FULL, "", True)) == ["a", "b/c", ""]
    assert rig.gate.waiting() == 1
    assert rig.push("C", other, Event(UPDATE, "x"), root=1) == []
    assert rig.push("C", other, Event(FULL, "", True), root=1) == ["a"]


def test_gate_update_of_a_directory_does_not_cover_below_it() -> None:
    rig = GateRig()
    seq = rig.record(Event(UPDATE, "d", True), Event(UPDATE, "d/x"))
    assert rig.both(seq, Event(UPDATE, "d", True)) == ["d"]
    assert rig.gate.waiting() == 1


def test_gate_later_notice_for_a_path_replaces_the_earlier() -> None:
    rig = GateRig()
    rig.record(Event(UPDATE, "f"))
    rig.record(Event(UPDATE, "g"))
    seq = rig.record(Event(DELETE, "f"))
    assert rig.gate.waiting() == 2
    released = rig.both(seq, Event(DELETE, "f"), Event(UPDATE, "g"))
    assert released == ["g", "f"]  # f now counts as seen with the delete, after g
    assert [n.kind for n in rig.released] == ["update", "delete"]
    assert rig.drops == []


def test_gate_lanes_start_again_for_a_replaced_notice() -> None:
    rig = GateRig()
    first = rig.record(Event(UPDATE, "f"))
    assert rig.push("A", first, Event(UPDATE, "f")) == []
    second = rig.record(Event(UPDATE, "f"))
    assert rig.push("B", second, Event(UPDATE, "f")) == []  # A has not pushed the new one
    assert rig.push("A", second, Event(UPDATE, "f")) == ["f"]


def test_gate_delete_of_a_directory_drops_what_waits_below_it() -> None:
    rig = GateRig()
    rig.record(Event(UPDATE, "d/x"), Event(UPDATE, "d/y/z"), Event(UPDATE, "dd/x"),
               Event(UPDATE, "d", True))
    rig.record(Event(UPDATE, "d/x"), root=1)
    seq = rig.record(Event(DELETE, "d", True))
    assert rig.gate.waiting() == 3  # "d" (the delete), "dd/x", and /r1's "d/x"
    assert rig.drops == []  # not lost: the directory's notice stands for them
    assert rig.both(seq, Event(DELETE, "d", True)) == ["d"]
    assert rig.released[-1].kind == "delete" and rig.released[-1].is_dir


def test_gate_delete_of_a_file_keeps_paths_below_that_name() -> None:
    rig = GateRig()
    rig.record(Event(UPDATE, "d/x"))
    rig.record(Event(DELETE, "d", False))
    assert rig.gate.waiting() == 2


def test_gate_rename_records_both_and_a_rename_push_releases_both() -> None:
    rig = GateRig()
    rig.record(Event(UPDATE, "old/x"))
    seq = rig.record(Event(RENAME, "new", True, "old"))
    assert rig.gate.waiting() == 2  # old/x dropped by the delete of old
    assert rig.push("A", seq, Event(RENAME, "new", True, "old")) == []
    assert rig.push("B", seq, Event(RENAME, "new", True, "old")) == ["old", "new"]
    assert [(n.kind, n.mask) for n in rig.released] == [
        ("delete", IN_MOVED_FROM | IN_ISDIR), ("update", IN_MOVED_TO | IN_ISDIR)
    ]


def test_gate_releases_in_the_order_recorded_across_records() -> None:
    rig = GateRig()
    seqs = [rig.record(Event(UPDATE, name)) for name in ["c", "a", "b"]]
    # Exact pushes, in another order and split between batches.
    assert rig.push("A", seqs[-1], Event(UPDATE, "b"), Event(UPDATE, "a"),
                    Event(UPDATE, "c")) == []
    assert rig.push("B", seqs[-1], Event(UPDATE, "b"), Event(UPDATE, "c"),
                    Event(UPDATE, "a")) == ["c", "a", "b"]


def test_gate_releases_in_the_order_recorded_on_a_covering_push() -> None:
    rig = GateRig()
    names = [f"n{i}" for i in range(30)]
    seq = rig.record(*[Event(UPDATE, name) for name in names])
    assert rig.both(seq, Event(FULL, "", True)) == names


def test_gate_releases_in_the_order_recorded_on_an_exact_push() -> None:
    rig = GateRig()
    names = [f"n{i}" for i in range(30)]
    seq = rig.record(*[Event(UPDATE, name) for name in names])
    events = [Event(UPDATE, name) for name in names]
    assert rig.both(seq, *events) == names


def test_gate_limit_drops_the_oldest() -> None:
    rig = GateRig(limit=3)
    seqs = [rig.record(Event(UPDATE, f"f{i}")) for i in range(5)]
    assert rig.gate.waiting() == 3
    assert [count for count, _ in rig.drops] == [1, 1]
    assert all("waiting for a remote" in why for _, why in rig.drops)
    assert rig.both(seqs[-1], Event(FULL, "", True)) == ["f2", "f3", "f4"]


def test_gate_limit_counts_one_record_at_once() -> None:
    rig = GateRig(limit=3)
    rig.record(*[Event(UPDATE, f"f{i}") for i in range(7)])
    assert rig.gate.waiting() == 3
    assert [count for count, _ in rig.drops] == [4]


def test_gate_replacing_a_notice_does_not_count_against_the_limit() -> None:
    rig = GateRig(limit=2)
    for _ in range(5):
        rig.record(Event(UPDATE, "a"), Event(UPDATE, "b"))
    assert rig.gate.waiting() == 2 and rig.drops == []


def test_gate_events_without_notices_still_get_a_sequence() -> None:
    rig = GateRig()
    seq = rig.record(Event(FULL, "", True), Event(DELETE, "", True))
    assert rig.gate.waiting() == 0
    assert rig.both(seq, Event(FULL, "", True)) == []


def test_gate_ten_thousand_directory_deletions_take_linear_time() -> None:
    # rm -r of a wide tree: one watcher batch per rmdir, then each lane pushing each one.
    # Scanning every waiting notice per deletion and per push stalled the watcher 45 s.
    rig = GateRig(limit=100_000)
    count = 10_000
    started = time.process_time()
    seqs = [rig.record(Event(DELETE, f"up/d{i}", True)) for i in range(count)]
    for lane in ("A", "B"):
        for i, seq in enumerate(seqs):
            rig.gate.pushed(0, lane, [Event(DELETE, f"up/d{i}", True)], seq)
    spent = time.process_time() - started
    assert [n.rel for n in rig.released] == [f"up/d{i}" for i in range(count)]
    assert rig.gate.waiting() == 0
    assert spent < 2.0, f"{spent:.1f} s of CPU for {count} directory deletions"


class Held:
    def __init__(self, seq: int, order: int, notice: Notice, lanes: set[str]):
        self.seq, self.order, self.notice, self.lanes = seq, order, notice, lanes


def ancestors(rel: str) -> list[str]:
    """'' and every directory above rel: 'a/b/c' -> '', 'a', 'a/b'."""
    return [""] + [rel[:i] for i, char in enumerate(rel) if char == "/"]


class ScanningGate:
    """The specification: the gate as it was before its index (2491a51), which scanned
    every waiting notice of a root for each directory deletion and each covering push."""

    def __init__(self, roots: list[str], lanes: list[list[str]], limit: int):
        self.roots = roots
        self.lanes = [frozenset(group) for group in lanes]
        self.limit = limit
        self.seq = self.order = 0
        self.waiting: dict[tuple[int, str], Held] = {}
        self.released: list[list[Notice]] = []
        self.drops: list[int] = []

    def record(self, root: int, events: list[Event]) -> int:
        self.seq += 1
        for notice in notices_for(self.roots[root], events, NOW):
            key = (root, notice.rel)
            if notice.kind == "delete" and notice.is_dir:
                prefix = notice.rel + "/"
                for other in [k for k in self.waiting if k[0] == root
                              and k[1].startswith(prefix)]:
                    del self.waiting[other]
            self.waiting.pop(key, None)
            self.order += 1
            self.waiting[key] = Held(self.seq, self.order, notice, set(self.lanes[root]))
        over = len(self.waiting) - self.limit
        for key in list(self.waiting)[:max(0, over)]:
            del self.waiting[key]
        if over > 0:
            self.drops.append(over)
        return self.seq

    def pushed(self, root: int, lane: str, events: list[Event], seq: int) -> None:
        sources = {e.src for e in events if e.src is not None}
        exact = {e.path for e in events} | sources
        covering = {e.path for e in events if e.kind != UPDATE} | sources
        keys = ([k for k in self.waiting if k[0] == root] if covering
                else [(root, path) for path in exact])
        released = []
        for key in keys:
            held = self.waiting.get(key)
            if held is None or held.seq > seq:
                continue
            if key[1] not in exact and not any(a in covering for a in ancestors(key[1])):
                continue
            held.lanes.discard(lane)
            if not held.lanes:
                del self.waiting[key]
                released.append(held)
        self.hand_over(released)

    def set_lanes(self, root: int, lanes: set[str]) -> None:
        self.lanes[root] = frozenset(lanes)
        released = []
        for key, held in list(self.waiting.items()):
            if key[0] == root:
                held.lanes &= self.lanes[root]
                if not held.lanes:
                    del self.waiting[key]
                    released.append(held)
        self.hand_over(released)

    def hand_over(self, released: list[Held]) -> None:
        if released:
            self.released.append([h.notice for h in sorted(released, key=lambda h: h.order)])


_gate_rels = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3).map("/".join)
_gate_events = st.lists(st.one_of(
    st.builds(Event, st.sampled_from([UPDATE, DELETE, SUBTREE, FULL]), _gate_rels,
              st.booleans()),
    st.builds(Event, st.just(RENAME), _gate_rels, st.booleans(), _gate_rels | st.none()),
), max_size=4)
_gate_ops = st.lists(st.one_of(
    st.tuples(st.just("record"), st.integers(0, 1), _gate_events),
    st.tuples(st.just("pushed"), st.integers(0, 1), st.sampled_from("ABC"), _gate_events,
              st.integers(0, 3)),
    st.tuples(st.just("set_lanes"), st.integers(0, 1), st.sets(st.sampled_from("ABC"))),
), max_size=60)


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(limit=st.sampled_from([2, 5, 1000]), ops=_gate_ops)
def test_gate_releases_what_the_scanning_gate_released(limit: int, ops: list[tuple]) -> None:
    roots, lanes = ["/r0", "/r1"], [["A", "B"], ["C"]]
    reference = ScanningGate(roots, lanes, limit)
    batches: list[list[Notice]] = []
    drops: list[int] = []
    gate = Gate(roots, lanes, lambda batch: batches.append([n._replace(time=NOW) for n in batch]),
                limit, lambda count, _why: drops.append(count))
    flush = [("pushed", root, lane, [Event(FULL, "", True)], 0)
             for root in (0, 1) for lane in "ABC"]
    seq = 0
    for op in [*ops, *flush]:
        if op[0] == "record":
            seq = gate.record(op[1], op[2])
            assert reference.record(op[1], op[2]) == seq
        elif op[0] == "pushed":
            gate.pushed(op[1], op[2], op[3], max(0, seq - op[4]))
            reference.pushed(op[1], op[2], op[3], max(0, seq - op[4]))
        else:
            gate.set_lanes(op[1], sorted(op[2]))
            reference.set_lanes(op[1], op[2])
        assert batches == reference.released, op
        assert drops == reference.drops
        assert gate.waiting() == len(reference.waiting)
    assert gate.waiting() == 0
    assert [tree._below for tree in gate._trees] == [{}, {}]  # its index keeps nothing either


# --- Runner -----------------------------------------------------------------------------


def numbered(count: int, start: int = 0) -> list[Notice]:
    return [notice(f"/w/f{i}") for i in range(start, start + count)]


class FakePlugin:
    """Records the batches it was given; `behaviour(call number, batch)` may raise."""

    name = "fake"

    def __init__(self, behaviour: Optional[Callable[[int, list[Notice]], None]] = None):
        self.behaviour = behaviour
        self.batches: list[list[Notice]] = []
        self.delivered: list[Notice] = []
        self.calls = 0
        self.closed = 0
        self.lock = threading.Lock()

    def deliver(self, notices: list[Notice]) -> None:
        with self.lock:
            self.calls += 1
            call = self.calls
            self.batches.append(list(notices))
        if self.behaviour is not None:
            self.behaviour(call, notices)
        with self.lock:
            self.delivered.extend(notices)

    def close(self) -> None:
        self.closed += 1


def always_failing(call: int, notices: list[Notice]) -> None:
    raise DeliveryError(0, "target down")


@pytest.fixture
def make_runner():
    made: list[Runner] = []

    def make(plugin: FakePlugin, **delivery) -> Runner:
        runner = Runner(plugin, Delivery(**delivery))
        made.append(runner)
        return runner

    yield make
    for runner in made:
        if runner.is_alive():
            runner.stop(0)
            runner.join(10)


def finish(runner: Runner, drain_seconds: float = 2.0) -> None:
    runner.stop(drain_seconds)
    runner.join(10)
    assert not runner.is_alive()


def test_runner_delivers_in_order_in_batches(make_runner) -> None:
    plugin = FakePlugin()
    runner = make_runner(plugin)
    notices = numbered(1200)
    runner.offer(notices)
    assert runner.pending() == 1200
    runner.start()
    wait_until(lambda: len(plugin.delivered) == 1200, timeout=5)
    assert plugin.delivered == notices
    assert [len(batch) for batch in plugin.batches] == [500, 500, 200]
    runner.offer(numbered(3, 1200))
    wait_until(lambda: len(plugin.delivered) == 1203, timeout=5)
    assert plugin.delivered[1200:] == numbered(3, 1200)
    finish(runner)
    assert runner.stats.delivered == 1203
    assert (runner.stats.dropped, runner.stats.failures) == (0, 0)
    assert plugin.closed == 1


def test_runner_offer_of_nothing_is_nothing(make_runner) -> None:
    runner = make_runner(FakePlugin())
    runner.offer([])
    assert runner.pending() == 0 and runner.stats.dropped == 0


def test_runner_keeps_what_a_delivery_error_left_and_retries_it(
    make_runner, caplog: pytest.LogCaptureFixture
) -> None:
    def partial(call: int, notices: list[Notice]) -> None:
        if call == 1:
            raise DeliveryError(2, "third one failed")

    plugin = FakePlugin(partial)
    runner = make_runner(plugin)
    runner.offer(numbered(5))
    with caplog.at_level(logging.INFO, logger="sersyncpy.plugins.runner"):
        runner.start()
        wait_until(lambda: plugin.calls >= 2 and runner.pending() == 0, timeout=5)
        finish(runner)
    assert plugin.batches[0] == numbered(5)
    assert plugin.batches[1] == numbered(3, 2)  # the first two are not sent again
    assert runner.stats.delivered == 5
    assert runner.stats.last_error == "third one failed"
    assert runner.stats.failures == 0  # back to zero once delivering again
    # Log text kept: the one WARNING, with the reason and what waits, is the product.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "plugin fake: third one failed; 3 notices waiting" in warnings[0]


def test_runner_survives_a_plugin_bug(make_runner, caplog: pytest.LogCaptureFixture) -> None:
    def buggy(call: int, notices: list[Notice]) -> None:
        if call <= 2:
            raise KeyError("oops")

    plugin = FakePlugin(buggy)
    runner = make_runner(plugin)
    runner.offer(numbered(3))
    with caplog.at_level(logging.INFO, logger="sersyncpy.plugins.runner"):
        runner.start()
        wait_until(lambda: len(plugin.delivered) == 3, timeout=5)
        assert runner.is_alive()
        runner.offer(numbered(1, 3))
        wait_until(lambda: len(plugin.delivered) == 4, timeout=5)
        finish(runner)
    assert plugin.calls == 4
    assert plugin.delivered == numbered(4)
    assert runner.stats.last_error == "KeyError: 'oops'"
    # Log text kept: a plugin's bug is logged with its traceback, once per failure.
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert errors[0].getMessage() == "plugin fake: delivery failed" and errors[0].exc_info


def test_runner_queue_limit_drops_and_counts(make_runner,
                                             caplog: pytest.LogCaptureFixture) -> None:
    plugin = FakePlugin()
    runner = make_runner(plugin, queue=3)
    with caplog.at_level(logging.WARNING, logger="sersyncpy.plugins.runner"):
        runner.offer(numbered(2))
        runner.offer(numbered(3, 2))
        runner.offer(numbered(1, 5))
    assert runner.pending() == 3
    assert runner.stats.dropped == 3
    # Log text kept: the WARNING names why notices were lost (the counter says how many).
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "a drop is logged"
    assert "plugin fake: dropped 2 notices: its queue is full (3 notices)" in warnings[0]
    runner.start()
    wait_until(lambda: len(plugin.delivered) == 3, timeout=5)
    finish(runner)
    assert plugin.delivered == numbered(3)  # the oldest are kept
    assert runner.stats.dropped == 3 and runner.stats.delivered == 3


def test_runner_drops_what_outlives_the_retry_budget(make_runner) -> None:
    plugin = FakePlugin(always_failing)
    runner = make_runner(plugin, retry_seconds=0.3)
    started = time.monotonic()
    runner.offer(numbered(4))
    runner.start()
    wait_until(lambda: runner.stats.dropped == 4, timeout=5)
    assert time.monotonic() - started >= 0.3
    assert runner.pending() == 0
    assert runner.stats.delivered == 0 and runner.stats.failures >= 1
    assert runner.stats.last_error == "target down"
    assert runner.is_alive()
    finish(runner)
    assert runner.stats.dropped == 4  # nothing left to drop at stop


def test_runner_stop_delivers_what_is_queued(make_runner) -> None:
    release = threading.Event()

    def slow_first(call: int, notices: list[Notice]) -> None:
        if call == 1:
            assert release.wait(5)

    plugin = FakePlugin(slow_first)
    runner = make_runner(plugin)
    runner.offer(numbered(1))
    runner.start()
    wait_until(lambda: plugin.calls == 1, timeout=5)
    runner.offer(numbered(4, 1))  # queued while the first delivery is under way
    runner.stop(drain_seconds=5)
    release.set()
    runner.join(10)
    assert not runner.is_alive()
    assert plugin.delivered == numbered(5)
    assert (runner.stats.delivered, runner.stats.dropped) == (5, 0)
    assert plugin.closed == 1


def test_runner_stopped_before_it_started_still_delivers(make_runner) -> None:
    plugin = FakePlugin()
    runner = make_runner(plugin)
    runner.offer(numbered(3))
    runner.stop(drain_seconds=5)
    runner.start()
    runner.join(10)
    assert not runner.is_alive()
    assert plugin.delivered == numbered(3) and plugin.closed == 1


def test_runner_stop_drops_what_a_failing_plugin_left(
    make_runner, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = FakePlugin(always_failing)
    runner = make_runner(plugin)  # retry budget of 300 s: nothing expires by itself
    runner.offer(numbered(3))
    runner.start()
    wait_until(lambda: plugin.calls >= 1, timeout=5)
    with caplog.at_level(logging.WARNING, logger="sersyncpy.plugins.runner"):
        started = time.monotonic()
        finish(runner, drain_seconds=0.3)
    assert time.monotonic() - started < 5
    assert runner.stats.dropped == 3 and runner.stats.delivered == 0
    assert runner.pending() == 0
    assert plugin.closed == 1
    # Log text kept: the WARNING names why notices were lost (the counter says how many).
    assert "dropped 3 notices: still undelivered at stop" in caplog.text


def test_runner_idle_stop_ends_at_once(make_runner) -> None:
    plugin = FakePlugin()
    runner = make_runner(plugin)
    runner.start()
    started = time.monotonic()
    finish(runner, drain_seconds=5)
    assert time.monotonic() - started < 2
    assert plugin.closed == 1 and plugin.calls == 0


def test_a_directory_that_arrives_whole_gives_a_notice_per_file_inside(tmp_path: Path) -> None:
    for rel in ("app/index.php", "app/lib/util.php", "app/skip.gz", "app/.git/HEAD"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    os.symlink("/etc", tmp_path / "app/link")  # a symlink is told of, never followed

    def excluded(rel: str, is_dir: bool) -> bool:
        return rel.endswith(".gz")

    root = str(tmp_path)
    for event in (Event(SUBTREE, "app", True), Event(RENAME, "app", True, "old")):
        told = [(n.kind, n.rel, n.is_dir) for n in
                notices_for(root, [event], 0.0, inside=True, excluded=excluded)]
        assert told[-6:] == [("update", "app/.git", True), ("update", "app/.git/HEAD", False),
                             ("update", "app/index.php", False), ("update", "app/lib", True),
                             ("update", "app/lib/util.php", False),
                             ("update", "app/link", False)]
        assert ("update", "app", True) in told
    # refreshCDN and the plugins of an older sersyncpy: the directory alone.
    assert [n.rel for n in notices_for(root, [Event(SUBTREE, "app", True)], 0.0)] == ["app"]
