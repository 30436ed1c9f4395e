"""Table tests of sersyncpy.check: the text `sersyncpy -t` prints for a config, asserted on the
lines that matter (never the whole text)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from sersyncpy import __version__, check, config, faillog, rsync
from sersyncpy.errors import ConfigError
from sersyncpy.wiring import target_for

REPO_CONFXML = Path(__file__).resolve().parents[2] / "confxml.xml"
STOCK_WATCH = b'watch="/opt/tongbu"'


@pytest.fixture
def watch(tmp_path: Path) -> str:
    directory = tmp_path / "tongbu"
    directory.mkdir()
    return str(directory)


def load(tmp_path: Path, text: str | bytes) -> config.Config:
    path = tmp_path / "confxml.xml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return config.load(str(path))


def lines_of(text: str) -> list[str]:
    assert text.endswith("\n") and "\r" not in text
    return text.splitlines()


def line_starting(lines: list[str], start: str) -> str:
    found = [line for line in lines if line.startswith(start)]
    assert len(found) == 1, (start, found)
    return found[0]


def argv_line(lines: list[str], label: str, what: str) -> str:
    """The argv shown for `what` ("live batch", ...) under the remote labelled `label`."""
    at = lines.index(f"  remote {label} (as the log names it)")
    found = [line for line in lines[at + 1:at + 7] if line.startswith(f"    {what}:")]
    assert len(found) == 1, (label, what)
    return found[0].split(": ", 1)[1].strip()


def minimal(watch: str, inside_head: str = "", inside_sersync: str = "",
            rsync_xml: str = "", remotes: str = '<remote ip="10.0.0.1" name="mod"/>') -> str:
    return f"""<head>
    {inside_head}
    <sersync>
        <localpath watch="{watch}">{remotes}</localpath>
        <rsync>{rsync_xml}</rsync>
        {inside_sersync}
    </sersync>
</head>
"""


# --- the repository's confxml.xml ---------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, watch: str) -> config.Config:
    text = REPO_CONFXML.read_bytes()
    assert STOCK_WATCH in text
    return load(tmp_path, text.replace(STOCK_WATCH, b'watch="%s"' % watch.encode()))


def test_repo_confxml_roots_remotes_and_the_argv_of_each_call(repo, watch) -> None:
    lines = lines_of(check.report(repo))
    assert lines[0] == f"sersyncpy {__version__} -t: {repo.source}, as sersyncpy understands it"
    assert f"root {watch}" in lines
    label = "127.0.0.1::tongbu1"
    host = line_starting(lines, "    host 127.0.0.1,")
    assert host == ("    host 127.0.0.1, port 873 (rsync's default), module tongbu1, "
                    "no user (<auth> off)")
    # What the run runs: daemon.target_for's Target through rsync's argv builders.
    target = target_for(repo, repo.localpaths[0].remotes[0])
    assert target.label == label
    expected = {
        "live batch": check.as_run(rsync.listed_argv(target)),
        "full sync": check.as_run(rsync.full_argv(target), ""),
        "renamed dir": rsync.rename_argv(target, "OLD", "NEW"),
        "dir metadata": check.as_run(rsync.dirs_argv(target)),
    }
    for what, argv in expected.items():
        assert argv_line(lines, label, what) == shlex.join(argv)
    live = argv_line(lines, label, "live batch").split()
    for added in ("--sockopts=TCP_NODELAY", "--contimeout=10", "--timeout=60", "--stats",
                  "-I", "-R", "--delete-missing-args", "./PATH"):
        assert added in live, added
    assert "-c" not in live  # -artuz has -u, but a one-way replica has no echo: -I
    assert "--files-from=-" not in live  # paths go as arguments
    assert any("no shell runs" in line for line in lines)


def test_repo_confxml_explains_only_the_options_it_adds(repo) -> None:
    lines = lines_of(check.report(repo))
    start = lines.index("options sersyncpy adds to <commonParams>:")
    explained = [line.split(":")[0].strip() for line in lines[start + 1:]
                 if line.startswith("  -")]
    assert explained[:4] == ["-r", "-I", "-R", "--sockopts=TCP_NODELAY"]
    assert "--timeout=60" in explained and "--stats" in explained
    for absent in ("-c", "-s", "-e", "--port", "--password-file", "--exclude", "--exclude-from"):
        assert absent not in explained, absent
    assert "-artuz" not in explained  # commonParams itself is the user's


def test_repo_confxml_events_filter_dotfiles_crontab(repo) -> None:
    lines = lines_of(check.report(repo))
    assert ("  watched and pushed: delete, createFolder, closeWrite, moveFrom, moveTo"
            in lines)
    assert "  off: createFile, attrib, modify" in lines
    assert "filter (<filter>): off: no path is left out" in lines
    assert line_starting(lines, "dotfiles: ").startswith(
        "dotfiles: every name is pushed live (keepDotfiles=\"true\", the default; sersync 2.5")
    assert line_starting(lines, "  at every start: ").endswith("(sersync 2.5: only with -r)")
    assert "  <crontab>: off (start=\"false\")" in lines
    assert "  <crontabfilter>: off" in lines


def test_repo_confxml_plugin_files_metrics_password(repo) -> None:
    lines = lines_of(check.report(repo))
    assert "plugin (<sersync><plugin>): none" in lines
    sections = line_starting(lines, "<plugin> sections, for -m NAME")
    for name in ("command (line ", "socket (line ", "refreshCDN (line ", "http (line "):
        assert name in sections
    fail_log = "/var/lib/sersyncpy/rsync_fail_log.sh"
    assert line_starting(lines, "fail log: ").startswith(f"fail log: {fail_log} ")
    assert "  timeToExecute 60: every failed push is tried again at least every 60 minutes" in lines
    assert line_starting(lines, "  maxPending ").startswith("  maxPending 20000: ")
    assert line_starting(lines, "lock: ").startswith(f"lock: {faillog.lock_path(fail_log)} ")
    assert line_starting(lines, "status file: ").startswith(
        "status file: /var/lib/sersyncpy/rsync_fail_log.status.json (beside the fail log;")
    assert line_starting(lines, "metrics: ").startswith("metrics: off")
    assert "<host hostip port>: never served (sersync 2.5 only printed it)" in lines
    assert "password file: none (<auth> off)" in lines
    assert lines[-3:] == [
        "  none", "",
        f"sersyncpy: {repo.source}: the config is valid (0 warnings); nothing was started"]
    assert not any("WARNING" in line for line in lines)


# --- ssh ----------------------------------------------------------------------------------


def test_ssh_remotes_login_directory_and_argv(tmp_path, watch) -> None:
    cfg = load(tmp_path, minimal(
        watch,
        remotes='<remote ip="backup.example.com" name="/srv/backup/www" port="2222"/>'
                '<remote ip="10.0.0.9" name="/srv/www"/>',
        rsync_xml='<commonParams params="-a"/>'
                  '<auth start="true" users="sync" passwordfile="/nonexistent/rsync.pas"/>'
                  '<ssh start="true" command="ssh -i /root/.ssh/sersync_key"/>'))
    lines = lines_of(check.report(cfg))
    assert "    host 10.0.0.9, ssh's port (<ssh command>, ~/.ssh/config, else 22), remote " \
           "directory /srv/www, login sync (<auth users>)" in lines
    assert line_starting(lines, "    host backup.example.com, ").startswith(
        "    host backup.example.com, port 2222 not used (see the warnings), ")
    live = argv_line(lines, "10.0.0.9:/srv/www", "live batch")
    assert live.startswith("rsync -a -s -e 'ssh -i /root/.ssh/sersync_key' --timeout=60 "
                           "--stats -r -I ")
    assert live.endswith(" -R -- ./PATH sync@10.0.0.9:/srv/www/")
    argvs = [argv_line(lines, label, what) for label in ("backup.example.com:2222:/srv/backup/www",
                                                           "10.0.0.9:/srv/www")
             for what in ("live batch", "full sync", "renamed dir", "dir metadata")]
    for daemon_only in ("--sockopts", "--contimeout", "--port", "--password-file"):
        assert not any(daemon_only in argv for argv in argvs), daemon_only
    assert "  -s: over ssh, names travel inside rsync's protocol, never on the remote shell's " \
           "command line" in lines
    assert "password file: not used over ssh (see the warnings)" in lines
    warnings = [line for line in lines if line.startswith("  WARNING: ")]
    assert len(warnings) == 2
    assert "<auth start=\"true\"> is not used in ssh mode" in warnings[0]
    assert "port 2222" in warnings[1] and "not used over ssh" in warnings[1]
    assert "(2 warnings)" in lines[-1]


# --- a config with every addition ---------------------------------------------------------

EVERYTHING = """<?xml version="1.0" encoding="UTF-8"?>
<head version="2.5">
    <host hostip="localhost" port="8008"/>
    <metrics start="true" hostip="::1" port="9108"/>
    <filter start="true" keepDotfiles="false">
        <exclude expression="(.*)\\.svn"/>
        <exclude expression="^static/*"/>
    </filter>
    <inotify>
        <delete start="true" inFullSync="false"/>
        <attrib start="true"/>
    </inotify>
    <sersync>
        <localpath watch="{www}">
            <remote ip="10.0.0.1" name="www"/>
            <remote ip="10.0.0.2" name="www" port="8741"/>
        </localpath>
        <localpath watch="{img}/">
            <remote ip="10.0.0.3" name="img"/>
        </localpath>
        <rsync>
            <commonParams params="-a --chmod=D755"/>
            <auth start="true" users="sync" passwordfile="{password}"/>
            <userDefinedPort start="true" port="874"/>
            <timeout start="true" time="100"/>
        </rsync>
        <failLog path="{state}/fail.sh" timeToExecute="30" maxPending="500"/>
        <crontab start="true" schedule="120">
            <crontabfilter start="true">
                <exclude expression="*.php"/>
                <exclude expression="info/*"/>
            </crontabfilter>
        </crontab>
        <plugin start="true" name="http"/>
    </sersync>
    <plugin name="http" queue="50" retrySeconds="60">
        <localpath watch="{www}">
            <deshost url="https://bob:s3cret@hooks.example.com/sync?token=abc123&amp;v=2"
                     format="json"/>
        </localpath>
    </plugin>
</head>
"""


@pytest.fixture
def everything(tmp_path: Path) -> config.Config:
    for name in ("www", "img", "state"):
        (tmp_path / name).mkdir()
    password = tmp_path / "rsync.pas"
    password.write_text("PASSWORD-CONTENT\n")
    password.chmod(0o600)
    return load(tmp_path, EVERYTHING.format(www=tmp_path / "www", img=tmp_path / "img",
                                            password=password, state=tmp_path / "state"))


def test_everything_roots_ports_and_password_file(everything, tmp_path) -> None:
    status_file = str(tmp_path / "elsewhere.json")
    text = check.report(everything, check.Options(status_file=status_file, threads=4))
    lines = lines_of(text)
    assert "mode: replication with rsync, at most 4 rsync processes at once (-n)" in lines
    assert [line for line in lines if line.startswith("root ")] == [
        f"root {tmp_path / 'www'}", f"root {tmp_path / 'img'}"]
    assert [line for line in lines if line.startswith("  remote ")] == [
        "  remote 10.0.0.1:874::www (as the log names it)",
        "  remote 10.0.0.2:8741::www (as the log names it)",
        "  remote 10.0.0.3:874::img (as the log names it)"]
    assert "    host 10.0.0.2, port 8741, module www, user sync (<auth users>)" in lines
    live = argv_line(lines, "10.0.0.2:8741::www", "live batch").split()
    password = str(tmp_path / "rsync.pas")
    assert "--port=8741" in live and f"--password-file={password}" in live
    assert "--timeout=100" in live and "-I" in live  # no -u in commonParams
    assert f"password file: {password} (readable by its owner only; its content is never " \
           "shown)" in lines
    assert "PASSWORD-CONTENT" not in text
    assert line_starting(lines, "status file: ") == (
        f"status file: {status_file} (--status-file; read by `sersyncpy status`)")
    assert "  maxPending 500: pending paths per remote beyond which they become one full " \
           "sync of the root" in lines
    assert "metrics: served at http://[::1]:9108/metrics" in lines


def test_everything_filter_and_crontabfilter_where_each_applies(everything) -> None:
    lines = lines_of(check.report(everything))
    filter_line = line_starting(lines, "filter (<filter>): on: ")
    assert "every push" in filter_line and "each path inside a directory sent whole" in filter_line
    at = lines.index(filter_line)
    assert lines[at + 1:at + 3] == ["  (.*)\\.svn", "  ^static/*"]
    live = argv_line(lines, "10.0.0.1:874::www", "live batch").split()
    full = argv_line(lines, "10.0.0.1:874::www", "full sync").split()
    exclude_from = f"--exclude-from={check.EXCLUDE_FILE}"
    assert exclude_from in live and exclude_from in full  # the <filter> regexes: everywhere
    assert "'--exclude=*.php'" in full and "'--exclude=*.php'" not in live  # full syncs only
    assert "'--exclude=.*.??????'" in live  # keepDotfiles="false": rsync's temporary files
    assert "--delete" not in full  # inFullSync="false"
    assert line_starting(lines, "dotfiles: ").startswith(
        "dotfiles: keepDotfiles=\"false\", sersync 2.5's rule: a file named .NAME, NAME~ or "
        "4913 is not pushed live")
    assert "  <crontab>: every 120 minutes" in lines
    assert "  <crontabfilter>: '*.php' 'info/*': rsync patterns for full syncs only, " \
           "never live" in lines
    assert line_starting(lines, "  delete inFullSync=").endswith("delete nothing (trees merge)")
    assert line_starting(lines, "  attrib: ").endswith("the subtree's watches were dropped)")


def test_everything_plugin_settings_with_the_secrets_masked(everything, tmp_path) -> None:
    text = check.report(everything)
    lines = lines_of(text)
    assert "plugin (<sersync><plugin>): http, told of each change once it is on every " \
           "remote of its root" in lines
    assert "  posts to https://****@hooks.example.com/sync?token=****&v=****, format json: " \
           "one JSON POST per batch" in lines
    assert "  queue: 50 changes at most; each retried for 60 s" in lines
    for secret in ("bob", "s3cret", "abc123"):
        assert secret not in text, secret


def test_everything_start_up_resync_with_r(everything) -> None:
    lines = lines_of(check.report(everything, check.Options(full_first=True)))
    assert ("  at start (-r): first, through each remote's queue, before any live change"
            in lines)


# --- single behaviours --------------------------------------------------------------------


@pytest.mark.parametrize("url, shown", [
    ("http://example.com/sync", "http://example.com/sync"),
    ("http://example.com:8080/a/b", "http://example.com:8080/a/b"),
    ("https://u:p@example.com/x", "https://****@example.com/x"),
    ("https://token@example.com/x", "https://****@example.com/x"),
    ("http://example.com/x?key=SECRET", "http://example.com/x?key=****"),
    ("http://example.com/x?SECRET", "http://example.com/x?****"),
    ("http://example.com/x?a=1&b=&SECRET", "http://example.com/x?a=****&b=****&****"),
    ("http://example.com/x#SECRET", "http://example.com/x#****"),
])
def test_masked_url(url: str, shown: str) -> None:
    assert check.masked_url(url) == shown


def test_crontab_runs_with_the_filter_on_and_no_crontabfilter(tmp_path, watch) -> None:
    # sersync switched it off; our full syncs apply the <filter> regexes, so it runs.
    cfg = load(tmp_path, minimal(
        watch,
        inside_head='<filter start="true"><exclude expression=".*\\.tmp"/></filter>',
        inside_sersync='<crontab start="true" schedule="60"/>'))
    lines = lines_of(check.report(cfg))
    assert line_starting(lines, "  <crontab>: ") == "  <crontab>: every 60 minutes"


def test_fail_log_in_a_directory_others_may_write_is_a_warning(tmp_path, watch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    cfg = load(tmp_path, minimal(
        watch, inside_sersync=f'<failLog path="{shared}/fail.sh" timeToExecute="0"/>'))
    lines = lines_of(check.report(cfg))
    assert line_starting(lines, "  WARNING: ").startswith(
        f"  WARNING: the fail log {shared}/fail.sh is in {shared}, where every local user")
    assert "  timeToExecute 0: no periodic retry beyond each remote's own" in lines


COMMAND = """<plugin name="command">
        <param prefix="{prefix}" suffix="--quiet"/>
        <filter start="true"><include expression="(.*)\\.php"/></filter>
    </plugin>"""


@pytest.mark.parametrize("prefix, hazard", [
    ("/bin/sh", True),
    ("/usr/bin/env python3", True),
    ("/bin/sh /usr/local/bin/purge", False),
    ("/usr/bin/logger -t sync --", False),
])
@pytest.mark.parametrize("standalone", [False, True])
def test_command_plugin_interpreter_prefix_is_a_warning(
        tmp_path, watch, prefix, hazard, standalone) -> None:
    sync = '<plugin start="true" name="command"/>' if not standalone else ""
    text = minimal(watch, inside_sersync=sync).replace(
        "</head>", COMMAND.format(prefix=prefix) + "\n</head>")
    cfg = load(tmp_path, text)
    options = check.Options(plugin="command" if standalone else None)
    lines = lines_of(check.report(cfg, options))
    runs = f"  runs: {prefix} PATH --quiet (PATH: the changed path, one argument; "
    assert line_starting(lines, "  runs: ").startswith(runs)
    assert "  paths: those one of these regular expressions matches in full: (.*)\\.php" in lines
    assert line_starting(lines, "  queue: ") == "  queue: 10000 changes at most"
    warnings = [line for line in lines if line.startswith("  WARNING: command: prefix=")]
    assert len(warnings) == (1 if hazard else 0)


def test_m_socket_watches_the_plugins_own_localpath(tmp_path, watch) -> None:
    own = tmp_path / "own"
    own.mkdir()
    socket = f"""<plugin name="socket">
        <localpath watch="{own}"><deshost ip="192.0.2.7" port="8009" format="json"/></localpath>
    </plugin>"""
    cfg = load(tmp_path, minimal(watch).replace("</head>", socket + "\n</head>"))
    lines = lines_of(check.report(cfg, check.Options(plugin="socket")))
    assert lines[3] == ("mode: -m socket: the plugin alone, told of each change at once; "
                        "no rsync (as sersync 2.5 -m)")
    assert [line for line in lines if line.startswith("root ")] == [f"root {own}"]
    assert "plugin socket (-m)" in lines
    assert "  sends to 192.0.2.7:8009, format json: one connection, one JSON line per change" \
           in lines
    assert line_starting(lines, "not used with -m: ").startswith(
        "not used with -m: the remotes and rsync")
    assert not any(line.startswith(("  remote ", "fail log:", "lock:")) for line in lines)


def test_m_with_bad_plugin_settings_is_the_runs_error(tmp_path, watch) -> None:
    socket = """<plugin name="socket">
        <localpath watch="/nonexistent/dir"><deshost ip="192.0.2.7" port="8009"/></localpath>
    </plugin>"""
    cfg = load(tmp_path, minimal(watch).replace("</head>", socket + "\n</head>"))
    with pytest.raises(ConfigError, match="nonexistent"):
        check.report(cfg, check.Options(plugin="socket"))


def test_refreshcdn_password_is_masked(tmp_path, watch) -> None:
    cdn = f"""<plugin name="refreshCDN">
        <localpath watch="{watch}">
            <cdninfo domainname="ccms.chinacache.com" port="80" username="me" passwd="hunter2"/>
            <sendurl base="http://pic.example.com/cms"/>
            <regexurl regex="false" match="x"/>
        </localpath>
    </plugin>"""
    cfg = load(tmp_path, minimal(watch, inside_sersync='<plugin start="true" name="refreshCDN"/>')
               .replace("</head>", cdn + "\n</head>"))
    text = check.report(cfg)
    assert "hunter2" not in text
    assert (f"  asks ccms.chinacache.com:80 (user me, password ****) with HEAD to refresh "
            f"http://pic.example.com/cms + the path below {watch}") in lines_of(text)


def test_delete_off_and_the_options_that_follow(tmp_path, watch) -> None:
    cfg = load(tmp_path, minimal(watch, inside_head='<inotify><delete start="false"/></inotify>'))
    lines = lines_of(check.report(cfg))
    assert "  delete off: nothing is ever deleted on the remotes" in lines
    live = argv_line(lines, "10.0.0.1::mod", "live batch").split()
    assert "--ignore-missing-args" in live and "--delete-missing-args" not in live


def test_repairs_are_warnings(tmp_path, watch) -> None:
    text = minimal(watch, rsync_xml='<timeout start=false time="100"/>')
    cfg = load(tmp_path, text)
    lines = lines_of(check.report(cfg))
    warning = line_starting(lines, "  WARNING: ")
    assert warning.startswith(f"  WARNING: {cfg.source}: repaired what sersync 2.5 accepted: ")
    assert "unquoted value of start" in warning
    assert "(1 warning)" in lines[-1]


def test_report_touches_nothing(tmp_path, watch) -> None:
    state = tmp_path / "state"
    state.mkdir()
    cfg = load(tmp_path, minimal(watch, inside_sersync=f'<failLog path="{state}/f.sh"/>'))
    before = sorted(os.listdir(tmp_path))
    check.report(cfg)
    assert sorted(os.listdir(tmp_path)) == before and not os.listdir(state)
    assert not os.path.exists(faillog.lock_path(str(state / "f.sh")))
