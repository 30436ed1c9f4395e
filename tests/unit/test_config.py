"""Table tests of sersyncpy.config: the stock sersync 2.5 sample, defaults, additions, errors."""

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree

from sersyncpy import config, convert
from sersyncpy.config import (
    Config,
    Crontab,
    FailLog,
    Filter,
    Inotify,
    LocalPath,
    Metrics,
    Remote,
    Rsync,
)
from sersyncpy.errors import ConfigError
from sersyncpy.wiring import target_for

REPO_CONFXML = Path(__file__).resolve().parents[2] / "confxml.xml"

# sersync 2.5.4's sample, verbatim from the behaviour reference (section 3.1).
SAMPLE = rb"""<?xml version="1.0" encoding="ISO-8859-1"?>
<head version="2.5">
    <host hostip="localhost" port="8008"></host>
    <debug start="false"/>
    <fileSystem xfs="false"/>
    <filter start="false">
        <exclude expression="(.*)\.svn"></exclude>
        <exclude expression="(.*)\.gz"></exclude>
        <exclude expression="^info/*"></exclude>
        <exclude expression="^static/*"></exclude>
    </filter>
    <inotify>
        <delete start="true"/>
        <createFolder start="true"/>
        <createFile start="false"/>
        <closeWrite start="true"/>
        <moveFrom start="true"/>
        <moveTo start="true"/>
        <attrib start="false"/>
        <modify start="false"/>
    </inotify>
    <sersync>
        <localpath watch="/opt/tongbu">
            <remote ip="127.0.0.1" name="tongbu1"/>
            <!--<remote ip="192.168.8.39" name="tongbu"/>-->
        </localpath>
        <rsync>
            <commonParams params="-artuz"/>
            <auth start="false" users="root" passwordfile="/etc/rsync.pas"/>
            <userDefinedPort start="false" port="874"/>
            <timeout start="false" time="100"/>
            <ssh start="false"/>
        </rsync>
        <failLog path="/tmp/rsync_fail_log.sh" timeToExecute="60"/>
        <crontab start="false" schedule="600">
            <crontabfilter start="false">
                <exclude expression="*.php"></exclude>
                <exclude expression="info/*"></exclude>
            </crontabfilter>
        </crontab>
        <plugin start="false" name="command"/>
    </sersync>
    <plugin name="command">
        <param prefix="/bin/sh" suffix="" ignoreError="true"/>
        <filter start="false">
            <include expression="(.*)\.php"/>
            <include expression="(.*)\.sh"/>
        </filter>
    </plugin>
    <plugin name="socket">
        <localpath watch="/opt/tongbu">
            <deshost ip="192.168.138.20" port="8009"/>
        </localpath>
    </plugin>
    <plugin name="refreshCDN">
        <localpath watch="/data0/htdocs/cms.xoyo.com/site/">
            <cdninfo domainname="ccms.chinacache.com" port="80" username="xxxx" passwd="xxxx"/>
            <sendurl base="http://pic.xoyo.com/cms"/>
            <regexurl regex="false" match="cms.xoyo.com/site([/a-zA-Z0-9]*).xoyo.com/images"/>
        </localpath>
    </plugin>
</head>
"""

STOCK_WATCH = b'watch="/opt/tongbu"'

SAMPLE_INOTIFY = Inotify(
    delete=True,
    create_folder=True,
    create_file=False,
    close_write=True,
    move_from=True,
    move_to=True,
    attrib=False,
    modify=False,
)


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def watch(tmp_path: Path) -> str:
    directory = tmp_path / "tongbu"
    directory.mkdir()
    return str(directory)


def edit(text: bytes, *changes: tuple[bytes, bytes]) -> bytes:
    """Apply (old, new) replacements, each of which must match."""
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return text


def sample(watch: str, *changes: tuple[bytes, bytes]) -> bytes:
    """The stock sample with its watch paths replaced by an existing directory."""
    return edit(SAMPLE, (STOCK_WATCH, b'watch="%s"' % watch.encode()), *changes)


def minimal(watch: str, inside_head: bytes = b"", inside_sersync: bytes = b"") -> bytes:
    return b"""<head>
%s
    <sersync>
        <localpath watch="%s"><remote ip="10.0.0.1" name="mod"/></localpath>
%s
    </sersync>
</head>
""" % (inside_head, watch.encode(), inside_sersync)


def load(tmp_path: Path, text: bytes) -> Config:
    path = tmp_path / "confxml.xml"
    path.write_bytes(text)
    return config.load(str(path))


def line_of(text: bytes, needle: bytes) -> int:
    assert text.count(needle) == 1, needle
    return text[: text.index(needle)].count(b"\n") + 1


def error_of(tmp_path: Path, text: bytes) -> str:
    """The message of the ConfigError that loading `text` raises; checks it is one line."""
    path = tmp_path / "confxml.xml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as caught:
        config.load(str(path))
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert caught.value.exit_code == 2
    return message


def assert_error(tmp_path: Path, text: bytes, needle, *fragments: str) -> str:
    """Loading fails at the line holding `needle` (or line `needle`), and the message holds
    every fragment."""
    message = error_of(tmp_path, text)
    line = needle if isinstance(needle, int) else line_of(text, needle)
    assert message.startswith(f"{tmp_path / 'confxml.xml'}:{line}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --- the stock sample and the repository's confxml.xml -----------------------------------


def test_stock_sample_parses_unchanged(tmp_path: Path, watch: str) -> None:
    cfg = load(tmp_path, sample(watch))
    assert cfg.source == str(tmp_path / "confxml.xml")
    assert cfg.metrics == Metrics(False, "127.0.0.1", 0)  # <host port="8008"> opens nothing
    assert (cfg.debug, cfg.xfs) == (False, False)
    assert cfg.filter == Filter(start=False, excludes=(), keep_dotfiles=True)
    assert cfg.inotify == SAMPLE_INOTIFY
    assert cfg.localpaths == (LocalPath(watch, (Remote("127.0.0.1", "tongbu1", None),)),)
    assert cfg.rsync == Rsync(
        common_params=("-artuz",),
        auth=False,
        users="",
        password_file=None,
        port=None,
        timeout=None,
        ssh=False,
    )
    assert cfg.fail_log == FailLog("/tmp/rsync_fail_log.sh", 60)
    assert cfg.crontab == Crontab(start=False, schedule=600, excludes=())
    assert cfg.sersync_plugin is None
    assert [section.name for section in cfg.plugins] == ["command", "socket", "refreshCDN"]


def test_stock_sample_plugin_sections_keep_element_and_line(watch: str) -> None:
    text = sample(watch)
    cfg = config.parse(text, "confxml.xml")
    socket = cfg.plugin("socket")
    assert socket is not None
    assert socket.line == line_of(text, b'<plugin name="socket">')
    assert socket.element.tag == "plugin"
    assert socket.element.find("localpath/deshost").get("port") == "8009"
    assert cfg.plugin("http") is None


def test_stock_sample_with_its_filters_switched_on(watch: str) -> None:
    text = sample(
        watch,
        (b'<filter start="false">\n        <exclude', b'<filter start="true">\n        <exclude'),
        (b'<crontab start="false"', b'<crontab start="true"'),
        (b'<crontabfilter start="false">', b'<crontabfilter start="true">'),
    )
    cfg = config.parse(text, "confxml.xml")
    assert cfg.filter.excludes == (r"(.*)\.svn", r"(.*)\.gz", "^info/*", "^static/*")
    assert cfg.crontab == Crontab(start=True, schedule=600, excludes=("*.php", "info/*"))


def test_parsing_twice_gives_equal_hashable_configs(watch: str) -> None:
    first = config.parse(sample(watch), "a.xml")
    second = config.parse(sample(watch), "a.xml")
    assert first == second and hash(first) == hash(second)
    with pytest.raises(AttributeError):
        first.debug = True  # type: ignore[misc]


def test_repo_confxml_parses_like_the_stock_sample(tmp_path: Path, watch: str) -> None:
    repo = load(
        tmp_path, edit(REPO_CONFXML.read_bytes(), (STOCK_WATCH, b'watch="%s"' % watch.encode()))
    )
    stock = load(tmp_path, sample(watch))
    # The fail log moved out of /tmp, where another user can plant it (issue 12).
    assert repo.fail_log == replace(stock.fail_log, path="/var/lib/sersyncpy/rsync_fail_log.sh")
    assert replace(repo, plugins=(), fail_log=stock.fail_log) == replace(stock, plugins=())
    # The repo's sample adds the http plugin, which sersync 2.5 never shipped.
    assert [p.name for p in repo.plugins] == [p.name for p in stock.plugins] + ["http"]


def _elements(element: etree._Element) -> list:
    return [child for child in element if isinstance(child.tag, str)]


# Attributes whose value the repository's sample changes on purpose (still there for sersync).
CHANGED_ON_PURPOSE = {
    ("/head/plugin/param", "prefix"),  # sersync's "/bin/sh" ran every uploaded file (issue 12)
    ("/head/sersync/failLog", "path"),  # /tmp lets another user plant it (issue 12)
}


def _assert_keeps(original: etree._Element, ours: etree._Element, where: str) -> None:
    where = f"{where}/{original.tag}"
    assert ours.tag == original.tag, where
    for name, value in original.attrib.items():
        if (where, name) in CHANGED_ON_PURPOSE:
            assert ours.get(name), (where, name)
        else:
            assert ours.get(name) == value, (where, name)
    assert [c.tag for c in _elements(ours)] == [c.tag for c in _elements(original)], where
    for child, our_child in zip(_elements(original), _elements(ours)):
        _assert_keeps(child, our_child, where)


def test_repo_confxml_keeps_every_element_and_attribute_of_the_sample() -> None:
    # So that sersync 2.5 itself can still read it.
    parser = etree.XMLParser(remove_comments=True)
    ours = etree.fromstring(REPO_CONFXML.read_bytes(), parser)
    http = ours.find("plugin[@name='http']")
    assert http is not None and http.find("localpath/deshost").get("url")
    ours.remove(http)  # our addition: sersync 2.5 ignores the section
    metrics = ours.find("metrics")
    assert metrics is not None and metrics.get("start") == "false"  # our addition: off
    ours.remove(metrics)
    watcher = ours.find("watcher")
    assert watcher is not None and watcher.get("use") == "auto"  # our addition: the default
    ours.remove(watcher)
    _assert_keeps(etree.fromstring(SAMPLE, parser), ours, "")
    assert ours.find("filter").get("keepDotfiles") == "true"  # every name, the default


# --- defaults -----------------------------------------------------------------------------


def test_defaults_for_every_optional_part(watch: str) -> None:
    cfg = config.parse(minimal(watch), "min.xml")
    assert cfg == Config(
        source="min.xml",
        metrics=Metrics(False, "127.0.0.1", 0),
        debug=False,
        xfs=False,
        filter=Filter(False, (), True),
        inotify=SAMPLE_INOTIFY,
        localpaths=(LocalPath(watch, (Remote("10.0.0.1", "mod", None),)),),
        rsync=Rsync(("-artuz",), False, "", None, None, None, False),
        fail_log=FailLog("/var/lib/sersyncpy/rsync_fail_log.sh", 60),
        crontab=Crontab(False, 600, ()),
        sersync_plugin=None,
        plugins=(),
    )


def test_missing_inotify_child_gets_the_sample_default(watch: str) -> None:
    text = minimal(
        watch, b'<inotify><delete start="false"/><attrib start="true"/><modify/></inotify>'
    )
    inotify = config.parse(text, "x.xml").inotify
    # modify has no start attribute: false; the five absent children keep the sample values.
    assert inotify == replace(SAMPLE_INOTIFY, delete=False, attrib=True, modify=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", False),
        ("TRUE", False),
        ("1", False),
        ("yes", False),
        (" true", False),
        ("", False),
    ],
)
def test_boolean_is_true_only_for_the_exact_string_true(
    watch: str, value: str, expected: bool
) -> None:
    text = minimal(watch, b'<debug start="%s"/><fileSystem xfs="%s"/>' % ((value.encode(),) * 2))
    cfg = config.parse(text, "x.xml")
    assert (cfg.debug, cfg.xfs) == (expected, expected)


def test_missing_start_attribute_means_false(watch: str) -> None:
    text = minimal(watch, b"<debug/><filter><exclude expression='(.*'/></filter>")
    cfg = config.parse(text, "x.xml")
    assert cfg.debug is False
    assert cfg.filter == Filter(False, (), True)  # off: the bad regex is not even compiled


@pytest.mark.parametrize(
    ("fail_log", "expected"),
    [
        (b"", FailLog("/var/lib/sersyncpy/rsync_fail_log.sh", 60)),  # never /tmp
        (b'<failLog path="/tmp/f.sh" timeToExecute=""/>', FailLog("/tmp/f.sh", 120)),
        (b'<failLog path="/tmp/f.sh"/>', FailLog("/tmp/f.sh", 120)),
        (b'<failLog path="" timeToExecute="5"/>',
         FailLog("/var/lib/sersyncpy/rsync_fail_log.sh", 5)),
        (b'<failLog path="/tmp/f.sh" maxPending="500"/>', FailLog("/tmp/f.sh", 120, 500)),
        (b'<failLog path="/tmp/f.sh" timeToExecute="0"/>', FailLog("/tmp/f.sh", 0)),
    ],
)
def test_fail_log_defaults(watch: str, fail_log: bytes, expected: FailLog) -> None:
    assert config.parse(minimal(watch, inside_sersync=fail_log), "x.xml").fail_log == expected


def test_the_default_fail_log_of_another_user_is_in_their_state_directory(
        watch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", "/home/u/.state")
    assert config.parse(minimal(watch), "x.xml").fail_log.path == (
        "/home/u/.state/sersyncpy/rsync_fail_log.sh")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", "/home/u")
    assert config.parse(minimal(watch), "x.xml").fail_log.path == (
        "/home/u/.local/state/sersyncpy/rsync_fail_log.sh")


def test_relative_fail_log_path_becomes_absolute(tmp_path: Path, watch: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = minimal(watch, inside_sersync=b'<failLog path="fail.sh" timeToExecute="1"/>')
    assert config.parse(text, "x.xml").fail_log == FailLog(str(tmp_path / "fail.sh"), 1)


@pytest.mark.parametrize(
    ("crontab", "expected"),
    [
        (b'<crontab start="true" schedule="30"/>', Crontab(True, 30, ())),
        (b'<crontab start="true"/>', Crontab(True, 600, ())),
        (b'<crontab start="false" schedule="45"/>', Crontab(False, 45, ())),
        (b'<crontab start="false" schedule="junk"/>', Crontab(False, 600, ())),
        (
            b'<crontab start="false"><crontabfilter start="true">'
            b'<exclude expression="*.tmp"/><exclude expression="cache/"/>'
            b"</crontabfilter></crontab>",
            Crontab(False, 600, ("*.tmp", "cache/")),  # -r uses them too
        ),
    ],
)
def test_crontab(watch: str, crontab: bytes, expected: Crontab) -> None:
    assert config.parse(minimal(watch, inside_sersync=crontab), "x.xml").crontab == expected


OFF = Metrics(False, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        (b"", OFF),
        # sersync only printed <host>: nearly every config has it, and it opens no port.
        (b'<host hostip="localhost" port="8008"/>', OFF),
        (b'<host hostip="0.0.0.0" port="http"/>', OFF),
        (b'<metrics start="false" port="9108"/>', OFF),
        (b'<metrics port="9108"/>', OFF),
        (b'<metrics start="true" port="9108"/>', Metrics(True, "127.0.0.1", 9108)),
        (b'<metrics start="true" hostip="198.18.0.1" port="9108"/>',
         Metrics(True, "198.18.0.1", 9108)),
    ],
)
def test_metrics_are_served_only_when_asked_for(watch: str, metrics: bytes,
                                                expected: Metrics) -> None:
    assert config.parse(minimal(watch, metrics), "x.xml").metrics == expected


@pytest.mark.parametrize(("metrics", "error"), [
    (b'<metrics start="true"/>', "<metrics>: missing required attribute port"),
    (b'<metrics start="true" port="http"/>', '<metrics port="http">: not a port number'),
    (b'<metrics start="true" port="0"/>', '<metrics port="0">: not a port number'),
    (b'<metrics start="true" hostip="" port="9108"/>', '<metrics hostip="">: must not be empty'),
])
def test_bad_metrics_settings_are_one_line_errors(watch: str, metrics: bytes,
                                                  error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        config.parse(minimal(watch, metrics), "x.xml")


def test_iso_8859_1_declaration_is_honoured(tmp_path: Path) -> None:
    directory = tmp_path / "caf\u00e9"
    directory.mkdir()
    text = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + minimal(str(directory)).replace(
        str(directory).encode(), str(directory).encode("iso-8859-1")
    )
    assert config.parse(text, "x.xml").localpaths[0].watch == str(directory)


# --- filter -------------------------------------------------------------------------------


def test_filter_reads_every_child_whatever_its_tag(watch: str) -> None:
    text = minimal(
        watch,
        b"""<filter start="true" keepDotfiles="true">
            <!-- a comment is not a child -->
            <exclude expression="(.*)\\.tmp"/>
            <include expression="^cache/.*"/>
        </filter>""",
    )
    flt = config.parse(text, "x.xml").filter
    assert flt == Filter(start=True, excludes=(r"(.*)\.tmp", "^cache/.*"), keep_dotfiles=True)
    compiled = flt.compiled()
    assert all(isinstance(pattern, re.Pattern) for pattern in compiled)
    assert compiled[0].fullmatch("a.tmp") and not compiled[0].fullmatch("a.tmpx")
    assert compiled[1].fullmatch("cache/x")


def test_keep_dotfiles_does_not_need_the_filter_started(watch: str) -> None:
    text = minimal(watch, b'<filter start="false" keepDotfiles="true"/>')
    assert config.parse(text, "x.xml").filter == Filter(False, (), True)


# --- localpaths and remotes ---------------------------------------------------------------


def test_several_localpaths_each_with_its_own_remotes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    text = b"""<head><sersync>
        <localpath watch="%(a)s/"><remote ip="h1" name="m1"/><remote ip="h2" name="m2"/></localpath>
        <localpath watch="%(b)s"><remote ip="h3" name="m3"/></localpath>
    </sersync></head>""" % {b"a": str(tmp_path / "a").encode(), b"b": str(tmp_path / "b").encode()}
    assert config.parse(text, "x.xml").localpaths == (
        LocalPath(str(tmp_path / "a"), (Remote("h1", "m1", None), Remote("h2", "m2", None))),
        LocalPath(str(tmp_path / "b"), (Remote("h3", "m3", None),)),
    )


def test_relative_watch_becomes_absolute_and_normalised(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "w" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    text = minimal("w/./sub//")
    assert config.parse(text, "x.xml").localpaths[0].watch == str(tmp_path / "w" / "sub")


@pytest.mark.parametrize(
    ("user_defined_port", "expected_ports"),
    [
        (b'<userDefinedPort start="true" port="8730"/>', (8741, 8730)),
        (b'<userDefinedPort start="false" port="8730"/>', (8741, None)),
        (b"", (8741, None)),
    ],
)
def test_remote_port_overrides_user_defined_port(
    watch: str, user_defined_port: bytes, expected_ports: tuple
) -> None:
    text = b"""<head><sersync>
        <localpath watch="%s">
            <remote ip="a" name="m" port="8741"/><remote ip="b" name="m"/>
        </localpath>
        <rsync>%s</rsync>
    </sersync></head>""" % (watch.encode(), user_defined_port)
    cfg = config.parse(text, "x.xml")
    assert tuple(remote.port for remote in cfg.localpaths[0].remotes) == expected_ports
    assert cfg.rsync.port == expected_ports[1]


def test_tag_and_attribute_names_match_case_insensitively_as_in_sersync(watch: str) -> None:
    text = b'<head><SERSYNC><localPath WATCH="%s"><Remote IP="h" Name="m"/></localPath></SERSYNC>'
    cfg = config.parse(text % watch.encode() + b"</head>", "x.xml")
    assert cfg.localpaths == (LocalPath(watch, (Remote("h", "m", None),)),)


# --- rsync --------------------------------------------------------------------------------


def test_rsync_options_when_started(tmp_path: Path, watch: str) -> None:
    password = tmp_path / "rsync.pas"
    password.write_text("secret\n")
    password.chmod(0o600)
    rsync = b"""<rsync>
        <commonParams params="-artuz --exclude='a b' -e &quot;ssh -p 22&quot;"/>
        <auth start="true" users="backup" passwordfile="%s"/>
        <userDefinedPort start="true" port="8730"/>
        <timeout start="true" time="100"/>
        <ssh start="true"/>
    </rsync>""" % str(password).encode()
    cfg = config.parse(minimal(watch, inside_sersync=rsync), "x.xml")
    assert cfg.rsync == Rsync(
        common_params=("-artuz", "--exclude=a b", "-e", "ssh -p 22"),
        auth=True,
        users="backup",
        password_file=None,  # over ssh rsync takes none: not read (issue 13 item 6)
        port=8730,
        timeout=100,
        ssh=True,
    )
    assert cfg.localpaths[0].remotes[0].port == 8730
    auth, port = cfg.warnings
    assert ': <auth start="true"> is not used in ssh mode' in auth, auth
    assert 'port 8730 (<remote port> or <userDefinedPort>) is not used over ssh' in port, port


def test_ssh_with_auth_needs_no_password_file_and_says_it_is_unused(watch: str) -> None:
    rsync = b"""<rsync>
        <auth start="true" users="backup" passwordfile="/nonexistent/rsync.pas"/>
        <ssh start="true"/>
    </rsync>"""
    cfg = config.parse(minimal(watch, inside_sersync=rsync), "x.xml")
    assert (cfg.rsync.users, cfg.rsync.password_file) == ("backup", None)
    assert len(cfg.warnings) == 1 and "password file" in cfg.warnings[0]
    # A daemon still needs it: the usual one-line error.
    daemon = rsync.replace(b'<ssh start="true"/>', b'<ssh start="false"/>')
    with pytest.raises(ConfigError, match="cannot use password file"):
        config.parse(minimal(watch, inside_sersync=daemon), "x.xml")


def test_auth_with_empty_password_file_has_none(watch: str) -> None:
    rsync = b'<rsync><auth start="true" users="u" passwordfile=""/></rsync>'
    cfg = config.parse(minimal(watch, inside_sersync=rsync), "x.xml")
    assert (cfg.rsync.auth, cfg.rsync.users, cfg.rsync.password_file) == (True, "u", None)


def test_options_off_ignore_their_values(watch: str) -> None:
    rsync = b"""<rsync><auth start="false" users="" passwordfile="/nonexistent"/>
        <userDefinedPort start="false" port="junk"/><timeout start="no" time="-1"/></rsync>"""
    cfg = config.parse(minimal(watch, inside_sersync=rsync), "x.xml")
    assert cfg.rsync == Rsync(("-artuz",), False, "", None, None, None, False)


def test_timeout_zero_is_allowed(watch: str) -> None:
    rsync = b'<rsync><timeout start="true" time="0"/></rsync>'
    assert config.parse(minimal(watch, inside_sersync=rsync), "x.xml").rsync.timeout == 0


@pytest.mark.parametrize("element, seconds", [
    (b"", 0.2), (b'<latency budgetMs="500"/>', 0.5), (b'<latency budgetMs="0"/>', 0.0),
    (b"<latency/>", 0.2),
])
def test_latency_budget_is_milliseconds_with_200_by_default(watch, element, seconds) -> None:
    rsync = b"<rsync>" + element + b"</rsync>"
    cfg = config.parse(minimal(watch, inside_sersync=rsync), "x.xml")
    assert cfg.rsync.latency_budget == seconds
    assert target_for(cfg, cfg.localpaths[0].remotes[0]).budget == seconds


@pytest.mark.parametrize("bad", [b"-1", b"abc", b"0.5"])
def test_a_bad_latency_budget_is_a_one_line_error(watch, bad) -> None:
    rsync = b'<rsync><latency budgetMs="' + bad + b'"/></rsync>'
    with pytest.raises(ConfigError) as e:
        config.parse(minimal(watch, inside_sersync=rsync), "x.xml")
    assert "latency" in str(e.value) and "budgetMs" in str(e.value) and "\n" not in str(e.value)


def test_empty_common_params_give_no_arguments(watch: str) -> None:
    rsync = b'<rsync><commonParams params=""/></rsync>'
    assert config.parse(minimal(watch, inside_sersync=rsync), "x.xml").rsync.common_params == ()


# --- plugins ------------------------------------------------------------------------------


def test_sersync_plugin_started(watch: str) -> None:
    text = sample(
        watch, (b'<plugin start="false" name="command"/>', b'<plugin start="true" name="socket"/>')
    )
    cfg = config.parse(text, "x.xml")
    assert cfg.sersync_plugin == "socket"
    assert cfg.plugin("socket") is cfg.plugins[1]


def test_first_plugin_section_of_a_name_wins(watch: str) -> None:
    text = minimal(watch, b'<plugin name="http" n="1"/><plugin name="http" n="2"/>')
    section = config.parse(text, "x.xml").plugin("http")
    assert section is not None and section.element.get("n") == "1"


# --- errors: one line, file:line, element, attribute and quoted value ----------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.xml"
    with pytest.raises(ConfigError) as caught:
        config.load(str(path))
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: Is a directory"):
        config.load(str(tmp_path))


def test_malformed_xml_names_the_line_lxml_gives(tmp_path: Path, watch: str) -> None:
    # Unquoted values are repaired (sersync 2.5 read them); lxml's words for what is not.
    text = sample(watch, (b'<fileSystem xfs="false"/>', b'<fileSystem xfs=false a="&#1;"/>'))
    assert_error(tmp_path, text, b"xfs=false", "malformed XML: ", "xmlChar", "column")


def test_malformed_xml_unclosed_element(tmp_path: Path, watch: str) -> None:
    # sersync 2.5 stopped at its parser's "Warning: Unmatched end tag" too.
    text = sample(watch, (b'<debug start="false"/>', b'<debug start="false">'))
    end = line_of(text, b"</head>")
    assert_error(tmp_path, text, b"<debug", f"malformed XML: <debug> is not closed before "
                 f"</head> on line {end} (sersync 2.5 refused it too)")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "confxml.xml"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:1: malformed XML: "):
        config.load(str(path))


def test_wrong_root(tmp_path: Path, watch: str) -> None:
    text = sample(watch, (b'<head version="2.5">', b"<config>"), (b"</head>", b"</config>"))
    assert_error(tmp_path, text, b"<config>", "<config>: the root element must be <head>")


def test_missing_sersync(tmp_path: Path) -> None:
    text = b'<?xml version="1.0"?>\n<head version="2.5">\n    <debug start="true"/>\n</head>\n'
    assert_error(tmp_path, text, b"<head", "<head>: missing required element <sersync>")


def test_missing_localpath(tmp_path: Path) -> None:
    text = b"<head>\n  <sersync>\n    <rsync/>\n  </sersync>\n</head>\n"
    assert_error(tmp_path, text, b"<sersync>", "<sersync>: missing required element <localpath>")


def test_missing_remote(tmp_path: Path, watch: str) -> None:
    text = sample(watch, (b'<remote ip="127.0.0.1" name="tongbu1"/>', b""))
    line = line_of(text, b"    <sersync>") + 1
    assert_error(tmp_path, text, line, "<localpath>: missing required element <remote>")


def _sersync_localpath(watch: bytes) -> bytes:
    return (
        b'<head><sersync>\n<localpath watch="%s">\n<remote ip="h" name="m"/>\n</localpath>\n'
        b"</sersync></head>\n" % watch
    )


@pytest.mark.parametrize(
    ("watch_value", "problem"),
    [
        (b"/nonexistent/tongbu", "directory does not exist"),
        (b"", "must not be empty"),
    ],
)
def test_bad_watch(tmp_path: Path, watch_value: bytes, problem: str) -> None:
    text = _sersync_localpath(watch_value)
    element = f'<localpath watch="{watch_value.decode()}">'
    assert_error(tmp_path, text, b"<localpath", f"{element}: {problem}")


def test_watch_that_is_a_file(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("x")
    text = _sersync_localpath(str(regular).encode())
    assert_error(tmp_path, text, b"<localpath", f'<localpath watch="{regular}">: not a directory')


def test_watch_attribute_missing(tmp_path: Path) -> None:
    text = b'<head><sersync>\n<localpath>\n<remote ip="h" name="m"/></localpath></sersync></head>'
    assert_error(tmp_path, text, b"<localpath", "<localpath>: missing required attribute watch")


def test_same_watch_twice(tmp_path: Path, watch: str) -> None:
    text = b"""<head><sersync>
<localpath watch="%(w)s"><remote ip="a" name="m"/></localpath>
<localpath watch="%(w)s/"><remote ip="b" name="m"/></localpath>
</sersync></head>""" % {b"w": watch.encode()}
    assert_error(
        tmp_path,
        text,
        b'%s/"' % watch.encode(),
        f'<localpath watch="{watch}/">: same directory as the <localpath> at line 2',
    )


# Each case: replacements in the stock sample, text that is on the bad line only, and what the
# message says after file:line: the element with the attribute and its quoted value, then
# the problem.
ATTRIBUTE_ERRORS = [
    # <remote>
    ((b'ip="127.0.0.1"', b'ip=""'), b'ip=""', '<remote ip="">: must not be empty'),
    ((b'name="tongbu1"', b'name=" "'), b'name=" "', '<remote name=" ">: must not be empty'),
    ((b'ip="127.0.0.1" ', b""), b'"tongbu1"', "<remote>: missing required attribute ip"),
    ((b'"tongbu1"/', b'"t" port="x"/'), b'port="x"', '<remote port="x">: not a port number'),
    ((b'"tongbu1"/', b'"t" port="0"/'), b'port="0"', '<remote port="0">: not a port number'),
    (
        (b'"tongbu1"/', b'"t" port="65536"/'),
        b'port="65536"',
        '<remote port="65536">: not a port number (1..65535)',
    ),
    # <rsync>
    (
        (b'<timeout start="false" time="100"/>', b'<timeout start="true" time="abc"/>'),
        b"<timeout",
        '<timeout time="abc">: not an integer',
    ),
    (
        (b'<timeout start="false" time="100"/>', b'<timeout start="true" time="-5"/>'),
        b"<timeout",
        '<timeout time="-5">: must not be negative',
    ),
    (
        (
            b'<userDefinedPort start="false" port="874"/>',
            b'<userDefinedPort start="true" port="0"/>',
        ),
        b"<userDefinedPort",
        '<userDefinedPort port="0">: not a port number (1..65535)',
    ),
    (
        (
            b'<userDefinedPort start="false" port="874"/>',
            b'<userDefinedPort start="true" port="8x"/>',
        ),
        b"<userDefinedPort",
        '<userDefinedPort port="8x">: not a port number',
    ),
    (
        (b'<userDefinedPort start="false" port="874"/>', b'<userDefinedPort start="true"/>'),
        b"<userDefinedPort",
        "<userDefinedPort>: missing required attribute port",
    ),
    (
        (b'params="-artuz"', b'params="-artuz \'--exclude=a"'),
        b"<commonParams",
        '<commonParams params="-artuz \'--exclude=a">: cannot be split into arguments: '
        "No closing quotation",
    ),
    # <failLog> and <crontab>
    (
        (b'timeToExecute="60"', b'timeToExecute="soon"'),
        b"<failLog",
        '<failLog timeToExecute="soon">: not an integer',
    ),
    (
        (b'timeToExecute="60"', b'timeToExecute="-1"'),
        b"<failLog",
        '<failLog timeToExecute="-1">: must not be negative',
    ),
    (
        (b'path="/tmp/rsync_fail_log.sh"', b'path="/nonexistent/fail.sh"'),
        b"<failLog",
        '<failLog path="/nonexistent/fail.sh">: its directory does not exist',
    ),
    (
        (b'<crontab start="false" schedule="600">', b'<crontab start="true" schedule="0">'),
        b"<crontab ",
        '<crontab schedule="0">: not a positive number of minutes',
    ),
    (
        (b'<crontab start="false" schedule="600">', b'<crontab start="true" schedule="-3">'),
        b"<crontab ",
        '<crontab schedule="-3">: not a positive number of minutes',
    ),
    (
        (b'<crontab start="false" schedule="600">', b'<crontab start="true" schedule="10m">'),
        b"<crontab ",
        '<crontab schedule="10m">: not a positive number of minutes',
    ),
    (
        (b'<crontab start="false" schedule="600">', b'<crontab start="true" schedule="">'),
        b"<crontab ",
        '<crontab schedule="">: not a positive number of minutes',
    ),
    # plugins
    (
        (b'<plugin start="false" name="command"/>', b'<plugin start="true" name="mail"/>'),
        b'name="mail"',
        '<plugin name="mail">: unknown plugin, expected one of command, socket, refreshCDN, http',
    ),
    (
        (b'<plugin start="false" name="command"/>', b'<plugin start="true" name="http"/>'),
        b'name="http"',
        '<plugin name="http">: no top-level <plugin name="http"> section',
    ),
    (
        (b'<plugin name="socket">', b'<plugin name="Socket">'),
        b'name="Socket"',
        '<plugin name="Socket">: unknown plugin',
    ),
    (
        (b'<plugin name="socket">', b"<plugin>"),
        b"<plugin>",
        "<plugin>: missing required attribute name",
    ),
]


@pytest.mark.parametrize(("change", "needle", "expected"), ATTRIBUTE_ERRORS)
def test_attribute_error(
    tmp_path: Path, watch: str, change: tuple, needle: bytes, expected: str
) -> None:
    assert_error(tmp_path, sample(watch, change), needle, expected)


def test_valid_user_defined_port_when_started(watch: str) -> None:
    change = (b'<userDefinedPort start="false"', b'<userDefinedPort start="true"')
    assert config.parse(sample(watch, change), "x.xml").rsync.port == 874


def test_invalid_regex_when_filter_started(tmp_path: Path, watch: str) -> None:
    text = sample(
        watch,
        (b'<filter start="false">\n        <exclude', b'<filter start="true">\n        <exclude'),
        (b'"^static/*"', b'"^static/(*"'),
    )
    assert_error(
        tmp_path,
        text,
        b"^static/(*",
        '<exclude expression="^static/(*">: invalid regular expression: ',
    )


def test_filter_child_without_expression(tmp_path: Path, watch: str) -> None:
    text = minimal(watch, b'<filter start="true">\n<exclude expression="a"/>\n<exclude/></filter>')
    assert_error(tmp_path, text, b"<exclude/>", "<exclude>: missing required attribute expression")


def _auth(password_file: str, users: str = "backup") -> tuple:
    old = b'<auth start="false" users="root" passwordfile="/etc/rsync.pas"/>'
    new = b'<auth start="true" users="%s" passwordfile="%s"/>' % (
        users.encode(),
        password_file.encode(),
    )
    return old, new


def test_password_file_missing(tmp_path: Path, watch: str) -> None:
    missing = str(tmp_path / "missing.pas")
    assert_error(
        tmp_path,
        sample(watch, _auth(missing)),
        b"<auth",
        f'<auth passwordfile="{missing}">: cannot use password file: No such file or directory',
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o660, 0o604])
def test_password_file_mode_must_be_0600(tmp_path: Path, watch: str, mode: int) -> None:
    password = tmp_path / "rsync.pas"
    password.write_text("secret\n")
    password.chmod(mode)
    assert_error(
        tmp_path,
        sample(watch, _auth(str(password))),
        b"<auth",
        f'<auth passwordfile="{password}">: mode {mode:04o}, must be 0600 (readable by its '
        "owner only)",
    )


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_password_files_are_accepted(tmp_path: Path, watch: str, mode: int) -> None:
    password = tmp_path / "rsync.pas"
    password.write_text("secret\n")
    password.chmod(mode)
    cfg = config.parse(sample(watch, _auth(str(password))), str(tmp_path / "c.xml"))
    assert cfg.rsync.password_file == str(password)


def test_password_file_that_is_a_directory(tmp_path: Path, watch: str) -> None:
    assert_error(
        tmp_path,
        sample(watch, _auth(str(tmp_path))),
        b"<auth",
        f'<auth passwordfile="{tmp_path}">: not a regular file',
    )


def test_auth_users_empty(tmp_path: Path, watch: str) -> None:
    password = tmp_path / "rsync.pas"
    password.write_text("secret\n")
    password.chmod(0o600)
    text = sample(watch, _auth(str(password), users=""))
    assert_error(tmp_path, text, b"<auth", '<auth users="">: must not be empty')


def test_bad_value_is_quoted_on_one_line(tmp_path: Path, watch: str) -> None:
    change = (b'<timeout start="false" time="100"/>',
              b'<timeout start="true" time="1&#10;0&quot;0"/>')
    assert_error(tmp_path, sample(watch, change), b"<timeout",
                 '<timeout time="1&#10;0&quot;0">: ')


def test_unexpected_exception_in_a_converter_becomes_config_error(
    tmp_path: Path, watch: str, monkeypatch
) -> None:
    def broken(value: str) -> list:
        raise RuntimeError("boom")

    monkeypatch.setattr(convert.shlex, "split", broken)
    assert_error(
        tmp_path,
        sample(watch),
        b"<commonParams",
        '<commonParams params="-artuz">: RuntimeError: boom',
    )


def test_unexpected_exception_in_a_section_becomes_config_error(
    tmp_path: Path, watch: str, monkeypatch
) -> None:
    def broken(**flags: bool) -> None:
        raise KeyError("flags")

    monkeypatch.setattr(config, "Inotify", broken)
    assert_error(tmp_path, sample(watch), b"<head", "<head>: unexpected KeyError: 'flags'")


@pytest.mark.parametrize("text", [None, 42, b"\xff\xfe<"])
def test_parse_never_lets_a_raw_exception_escape(text) -> None:
    with pytest.raises(ConfigError, match=r"^in\.xml:1: malformed XML: "):
        config.parse(text, "in.xml")


def test_the_same_remote_twice_in_one_localpath_is_refused(watch: str) -> None:
    text = minimal(watch).replace(
        b'<remote ip="10.0.0.1" name="mod"/>',
        b'<remote ip="10.0.0.1" name="mod"/>\n<remote ip="10.0.0.1" name="mod"/>')
    with pytest.raises(ConfigError) as caught:
        config.parse(text, "x.xml")
    assert str(caught.value) == ('x.xml:5: <remote name="mod">: same remote as the <remote> '
                                 "at line 4")



def test_ssh_command_and_delete_in_full_sync(watch: str) -> None:
    inside = (b'<rsync><ssh start="true" command="ssh -p 2222 -i /k"/></rsync>')
    head = b'<inotify><delete start="true" inFullSync="false"/></inotify>'
    cfg = config.parse(minimal(watch, inside_head=head, inside_sersync=inside), "x.xml")
    assert cfg.rsync.ssh and cfg.rsync.ssh_command == "ssh -p 2222 -i /k"
    assert cfg.inotify.delete and not cfg.inotify.delete_in_full_sync
    plain = config.parse(minimal(watch), "x.xml")
    assert plain.rsync.ssh_command == "ssh" and plain.inotify.delete_in_full_sync
    with pytest.raises(ConfigError) as caught:
        config.parse(minimal(watch, inside_sersync=b'<rsync><ssh start="true" command=" "/>'
                                                    b'</rsync>'), "x.xml")
    assert '<ssh command=" ">: must name the program' in str(caught.value)


# --- what sersync 2.5's parser accepted (issue 13 item 1) ---------------------------------
# A file that lxml refuses but sersync 2.5's lenient parser read is repaired as sersync read
# it, with one warning naming each repaired line; what sersync could not read stays an error.

CLEAN = rb"""<?xml version="1.0" encoding="UTF-8"?>
<head version="2.5">
    <host hostip="localhost" port="8008"></host>
    <debug start="false"/>
    <fileSystem xfs="false"/>
    <filter start="true">
        <exclude expression="(.*)\.svn"></exclude>
        <exclude expression="(.*)\.gz"></exclude>
    </filter>
    <inotify>
        <delete start="true"/>
        <createFolder start="true"/>
        <closeWrite start="true"/>
    </inotify>
    <!-- the sersync section -->
    <sersync>
        <localpath watch="WATCH">
            <remote ip="127.0.0.1" name="tongbu1"/>
        </localpath>
        <rsync>
            <commonParams params="-artuz"/>
            <auth start="false" users="root" passwordfile="/etc/rsync.pas"/>
            <timeout start="true" time="100"/>
        </rsync>
        <failLog path="/tmp/rsync_fail_log.sh" timeToExecute="60"/>
        <crontab start="false" schedule="600"/>
        <plugin start="false" name="command"/>
    </sersync>
    <plugin name="command">
        <param prefix="/bin/sh" suffix="" ignoreError="true"/>
    </plugin>
</head>
"""
GBK = "中文注释".encode("gbk")  # not UTF-8
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
REPAIRED = "repaired what sersync 2.5 accepted: "


def clean(watch: str) -> bytes:
    return CLEAN.replace(b"WATCH", watch.encode())


def edits(*changes: tuple[bytes, bytes]):
    return lambda text: edit(text, *changes)


def same(text: bytes) -> bytes:
    return text


def line_of_first(text: bytes, needle: bytes) -> int:
    return text[: text.index(needle)].count(b"\n") + 1


# name: (make the clean file malformed, make the clean file mean what sersync read,
#        [(text on the repaired line, phrase)])
ACCEPTED_SHAPES = {
    "unquoted value, as an Ansible role writes it": (
        edits((b'<timeout start="true"', b"<timeout start=false")),
        edits((b'<timeout start="true"', b'<timeout start="false"')),
        [(b"<timeout", "unquoted value of start")],
    ),
    "unquoted values throughout a tag": (
        edits((b'<timeout start="true" time="100"/>', b"<timeout start=true time=100/>")),
        same,
        [(b"<timeout", "unquoted value of start"), (b"<timeout", "unquoted value of time")],
    ),
    "GBK comment under encoding=UTF-8": (
        edits((b"<!-- the sersync section -->", b"<!-- " + GBK + b" -->")),
        same,
        [(b"<!-- ", "bytes that are not UTF-8 in a comment")],
    ),
    "GBK comment and no declaration": (
        edits((DECLARATION, b"\n"), (b"<!-- the sersync section -->", b"<!-- " + GBK + b" -->")),
        same,
        [(b"<!-- ", "bytes that are not UTF-8 in a comment")],
    ),
    '"--" inside a comment': (
        edits((b"the sersync section", b"the sersync -- section")),
        same,
        [(b"<!-- ", '"--" inside a comment')],
    ),
    "end tag in another case": (
        edits((b"<host ", b"<Host ")),
        same,
        [(b"<Host", "</host> closes <Host>")],
    ),
    "empty element closed by an end tag in another case": (
        edits((b'timeToExecute="60"/>', b'timeToExecute="60"></FailLog>')),
        same,
        [(b"<failLog", "</FailLog> closes <failLog>")],
    ),
    "attribute with no value": (
        edits((b'<debug start="false"/>', b"<debug start/>")),
        same,
        [(b"<debug", 'no value for start (read as "")')],
    ),
    "no space between attributes": (
        edits((b'ip="127.0.0.1" name=', b'ip="127.0.0.1"name=')),
        same,
        [(b"<remote", "no space before name")],
    ),
    "duplicate attribute: the first counts": (
        edits((b'<debug start="false"/>', b'<debug start="false" start="true"/>')),
        same,
        [(b"<debug", "start given twice (the first is read, as by sersync)")],
    ),
    "attribute whose name is not a name": (
        edits((b'<debug start="false"/>', b'<debug start="false" 2nd="x"/>')),
        same,
        [(b"<debug", "attribute 2nd is not a name (ignored)")],
    ),
    "byte order mark": (
        edits((DECLARATION, b"\xef\xbb\xbf" + DECLARATION), (b"xfs=\"false\"", b"xfs=false")),
        same,
        [(b"<fileSystem", "unquoted value of xfs")],
    ),
    "no declaration": (
        edits((DECLARATION, b"\n"), (b"xfs=\"false\"", b"xfs=false")),
        same,
        [(b"<fileSystem", "unquoted value of xfs")],
    ),
    "blank line before the declaration": (
        edits((DECLARATION + b"<head", b"\n" + DECLARATION[:-1] + b"<head")),
        same,
        [(b"<?xml", "white space before the XML declaration")],
    ),
    "declaration with unquoted values": (
        edits((DECLARATION, b"<?xml version=1.0 encoding=UTF-8?>\n")),
        same,
        [(b"<?xml", "malformed XML declaration")],
    ),
    "CRLF line ends": (
        lambda text: edit(text, (b"xfs=\"false\"", b"xfs=false")).replace(b"\n", b"\r\n"),
        lambda text: text.replace(b"\n", b"\r\n"),
        [(b"<fileSystem", "unquoted value of xfs")],
    ),
    "text after </head>": (
        edits((b"</head>\n", b"</head>\nThis is not XML, and never was.\n")),
        same,
        [(b"This is not", "text after </head> ignored")],
    ),
    "a second <head> after </head>: the first counts": (
        edits((b"</head>\n", b"</head>\n<head><debug start=true/></head>\n")),
        same,
        [(b"<head><debug", "<head> after </head> ignored")],
    ),
    "space after </": (
        edits((b"</sersync>", b"</ sersync>")),
        same,
        [(b"</ sersync>", 'space after "</"')],
    ),
    "entity in capitals": (
        edits((b'version="2.5"', b'version="2.5&AMP;"')),
        edits((b'version="2.5"', b'version="2.5&amp;"')),
        [(b"<head", "&AMP; read as &amp;")],
    ),
    "GBK in a value sersync never read": (
        edits((b'version="2.5"', b'version="' + GBK + b'"')),
        same,
        [(b"<head", "bytes that are not UTF-8 in the value of version")],
    ),
}


@pytest.mark.parametrize("name", ACCEPTED_SHAPES)
def test_malformed_file_sersync_accepted_is_read_as_sersync_read_it(
    tmp_path: Path, watch: str, name: str
) -> None:
    malformed, meaning, repairs = ACCEPTED_SHAPES[name]
    text = malformed(clean(watch))
    cfg = load(tmp_path, text)
    assert cfg == load(tmp_path, meaning(clean(watch)))
    where = "; ".join(f"line {line_of_first(text, needle)}: {phrase}" for needle, phrase in repairs)
    assert cfg.warnings == (f"{tmp_path / 'confxml.xml'}: {REPAIRED}{where}",)


def test_one_warning_line_groups_the_lines_of_a_repair(watch: str) -> None:
    text = edit(
        clean(watch),
        (b"<!-- the sersync section -->", b"<!-- " + GBK + b" -->"),
        (b"    <plugin name=", b"    <!-- " + GBK + b" --><plugin name="),
        (b'<timeout start="true"', b"<timeout start=true"),
    )
    cfg = config.parse(text, "/etc/confxml.xml")
    assert cfg.warnings == (
        f"/etc/confxml.xml: {REPAIRED}lines 15, 29: bytes that are not UTF-8 in a comment; "
        "line 23: unquoted value of start",
    )


@pytest.mark.parametrize(
    "text",
    [
        SAMPLE,
        REPO_CONFXML.read_bytes(),
        CLEAN,
        edit(CLEAN, (DECLARATION, b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'),
             (b"the sersync section", GBK)),
        edit(CLEAN, (b'"127.0.0.1" name="tongbu1"/>', b"'127.0.0.1' NAME='tongbu1'/>"),
             (b"<sersync>", b"<SERSYNC>"), (b"</sersync>", b"</SERSYNC>")),
        edit(CLEAN, (b"<!-- the sersync section -->", b'<!--<remote ip="a" name="b"/>-->')),
    ],
    ids=["stock-sample", "repo-confxml", "clean", "gbk-comment-iso-8859-1",
         "single-quotes-and-capitals", "commented-out-remote"],
)
def test_a_valid_file_is_read_with_no_warning(tmp_path: Path, watch: str, text: bytes) -> None:
    text = text.replace(STOCK_WATCH, b'watch="%s"' % watch.encode())
    assert load(tmp_path, text.replace(b"WATCH", watch.encode())).warnings == ()


def test_paths_are_trimmed_as_sersync_s_shell_split_them(tmp_path: Path, watch: str) -> None:
    password = tmp_path / "rsync.pas"
    password.write_text("secret\n")
    password.chmod(0o600)
    text = edit(
        clean(watch),
        (b'watch="%s"' % watch.encode(), b'watch=" %s "' % watch.encode()),
        (b'<auth start="false" users="root" passwordfile="/etc/rsync.pas"/>',
         b'<auth start="true" users="root" passwordfile="%s "/>' % str(password).encode()),
    )
    cfg = load(tmp_path, text)
    assert cfg.localpaths[0].watch == watch
    assert cfg.rsync.password_file == str(password)
    assert cfg.warnings == ()


def test_utf8_path_under_the_sample_s_iso_8859_1_declaration(tmp_path: Path) -> None:
    directory = tmp_path / "网站"
    directory.mkdir()
    text = edit(clean(str(directory)),
                (DECLARATION, b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'))
    cfg = load(tmp_path, text)
    assert cfg.localpaths[0].watch == str(directory)
    line = line_of(text, b"<localpath")
    assert cfg.warnings == (f"{tmp_path / 'confxml.xml'}: {REPAIRED}line {line}: value of "
                            "watch read as UTF-8, not ISO-8859-1",)


# name: (change to the clean file, text on the line named, what the message says)
REFUSED_SHAPES = {
    "GBK in a value sersync read": (
        (b'watch="WATCH"', b'watch="WATCH/' + GBK + b'"'),
        b"<localpath",
        "/\ufffd\ufffd",
    ),
    'bare "&" in a value': (
        (b'version="2.5"', b'version="2.5&beta"'),
        b"<head",
        'malformed XML: "&" in the value of version is not one of &amp; &lt; &gt; &quot; '
        "&apos; &#N; (sersync 2.5 refused it too)",
    ),
    '"<" in a value': (
        (b'"(.*)\\.gz"', b'"(?<name>.*)\\.gz"'),
        b"\\.gz",
        'malformed XML: <exclude> is not closed before the next "<"',
    ),
    "comment never closed": (
        (b"<!-- the sersync section -->", b"<!-- the sersync section ->"),
        b"<!--",
        "malformed XML: comment never closed by -->",
    ),
    "comment before the declaration": (
        (DECLARATION, b"<!-- a -->" + DECLARATION),
        b"<!-- a -->",
        "malformed XML: the XML declaration must come first",
    ),
    "end tag that closes nothing": (
        (b"</filter>", b"</filters>"),
        b"</filters>",
        "malformed XML: </filters> closes no open element",
    ),
    "an <exclude> left open": (
        (b'\\.svn"></exclude>', b'\\.svn">'),
        b"\\.svn",
        "malformed XML: <exclude> is not closed before </filter> on line 9",
    ),
    "</head> missing at the end": (
        (b"</head>\n", b"\n"),
        b"<head",
        "malformed XML: <head> is not closed before the end of the file",
    ),
    "a second </head>": (
        (b"</head>\n", b"</head>\n</head >\n"),
        b"</head >",
        "malformed XML: </head> closes no open element",
    ),
}


@pytest.mark.parametrize("name", REFUSED_SHAPES)
def test_malformed_file_sersync_refused_too_is_a_one_line_error(
    tmp_path: Path, watch: str, name: str
) -> None:
    change, needle, fragment = REFUSED_SHAPES[name]
    text = edit(CLEAN, change).replace(b"WATCH", watch.encode())
    assert_error(tmp_path, text, needle, fragment)


def test_gbk_in_a_value_that_is_read_says_what_to_do(tmp_path: Path, watch: str) -> None:
    text = edit(clean(watch), (b'users="root"', b'users="' + GBK + b'"'),
                (b'<auth start="false"', b'<auth start="true"'))
    assert_error(tmp_path, text, b"<auth", '<auth users="\ufffd', "holds bytes that are not "
                 "UTF-8 (shown as \ufffd): save the file in UTF-8, or declare its encoding")


def test_an_error_after_a_doubtful_repair_names_it(tmp_path: Path, watch: str) -> None:
    # sersync kept the opening quote in the value, and its shell then choked on it.
    text = edit(clean(watch), (b'<auth start="false" users="root" passwordfile="/etc/rsync.pas"/>',
                               b'<auth start="true" users="root" passwordfile="/etc/rsync.pas/>'))
    line = line_of(text, b"<auth")
    message = assert_error(tmp_path, text, line, '<auth passwordfile="&quot;/etc/rsync.pas">')
    assert message.endswith(f" (after repairing malformed XML as sersync 2.5 read it: line {line}:"
                            " value of passwordfile has no closing quote)")


def test_a_bad_value_in_a_repaired_file_is_the_usual_one_line_error(
    tmp_path: Path, watch: str
) -> None:
    text = edit(clean(watch), (b'ip="127.0.0.1" name="tongbu1"/>',
                               b"ip=127.0.0.1 name=tongbu1 port=abc/>"))
    message = assert_error(tmp_path, text, b"<remote", '<remote port="abc">')
    assert message.endswith('<remote port="abc">: not a port number (1..65535)')


@pytest.mark.parametrize("use", ["auto", "inotify", "fanotify"])
def test_watcher_use_is_read(watch: str, use: str) -> None:
    cfg = config.parse(minimal(watch, b'<watcher use="%s"/>' % use.encode()), "w.xml")
    assert cfg.watcher == use


def test_a_bad_watcher_is_a_one_line_error_naming_it(watch: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse(minimal(watch, b'<watcher use="kqueue"/>'), "w.xml")
    assert str(err.value).count("\n") == 0
    assert '<watcher use="kqueue">' in str(err.value) and "w.xml:" in str(err.value)
