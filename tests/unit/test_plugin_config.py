"""config.plugin_settings: each plugin's section of confxml.xml -> its *Settings, and the
one-line errors (FILE:LINE: <element attr="value">: problem) for what is wrong in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional, Union

import pytest

from sersyncpy import cli, config
from sersyncpy.errors import ConfigError, UsageError
from sersyncpy.plugins import registry, standalone_roots
from sersyncpy.plugins.command import command_argv
from sersyncpy.plugins.registry import build
from sersyncpy.plugins.settings import (
    CdnSettings,
    CommandSettings,
    Delivery,
    HttpSettings,
    SocketSettings,
)
from unit.test_config import SAMPLE

REPO_CONFXML = Path(__file__).resolve().parents[2] / "confxml.xml"

# The plugin sections of sersync 2.5.4's sample, and the http section of the repository's
# confxml.xml (sersync's sample has none).
SAMPLE_PLUGINS = (
    SAMPLE[SAMPLE.index(b'    <plugin name="command">'):SAMPLE.index(b"</head>")]
    + rb"""    <plugin name="http">
        <localpath watch="/opt/tongbu">
            <deshost url="http://192.168.138.20/sersync" port="8080"/>
        </localpath>
    </plugin>
"""
)

SOCKET_LOCALPATH = b'<localpath watch="/opt/tongbu">\n            <deshost ip='
SAMPLE_CDN_WATCH = "/data0/htdocs/cms.xoyo.com/site"
SAMPLE_MATCH = "cms.xoyo.com/site([/a-zA-Z0-9]*).xoyo.com/images"


@pytest.fixture
def watch(tmp_path: Path) -> str:
    directory = tmp_path / "tongbu"
    directory.mkdir()
    return str(directory)


def confxml(watch: str, plugins: bytes = SAMPLE_PLUGINS, started: Optional[str] = None) -> bytes:
    """A whole config: one <sersync> localpath at `watch`, then the plugin sections."""
    plugin = b'<plugin start="false" name="command"/>' if started is None else (
        b'<plugin start="true" name="%s"/>' % started.encode())
    return b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<head version="2.5">
    <sersync>
        <localpath watch="%s">
            <remote ip="127.0.0.1" name="tongbu1"/>
        </localpath>
        %s
    </sersync>
%s</head>
""" % (watch.encode(), plugin, plugins)


def edit(text: bytes, *changes: tuple[bytes, bytes]) -> bytes:
    """Apply (old, new) replacements, each of which must match exactly once."""
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def load(tmp_path: Path, text: bytes) -> config.Config:
    path = tmp_path / "confxml.xml"
    path.write_bytes(text)
    return config.load(str(path))


def settings(tmp_path: Path, text: bytes, name: str, standalone: bool = False):
    return config.plugin_settings(load(tmp_path, text), name, standalone)


def line_of(text: bytes, needle: bytes) -> int:
    assert text.count(needle) == 1, needle
    return text[: text.index(needle)].count(b"\n") + 1


def settings_error(tmp_path: Path, text: bytes, name: str, needle: Union[bytes, int],
                   standalone: bool = False) -> str:
    """Loading the file works (plugin sections are read only when used); reading plugin
    `name`'s settings fails with one line at the line holding `needle` (or line `needle`).
    Returns what follows "FILE:LINE: "."""
    cfg = load(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.plugin_settings(cfg, name, standalone)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert caught.value.exit_code == 2
    line = needle if isinstance(needle, int) else line_of(text, needle)
    prefix = f"{tmp_path / 'confxml.xml'}:{line}: "
    assert message.startswith(prefix), message
    return message[len(prefix):]


def one_plugin(body: bytes, name: str, attributes: bytes = b"") -> bytes:
    return b'    <plugin name="%s"%s>\n%s\n    </plugin>\n' % (name.encode(), attributes, body)


# --- the sample's sections ---------------------------------------------------------------


def test_sample_command(tmp_path: Path, watch: str) -> None:
    got = settings(tmp_path, confxml(watch), "command")
    assert got == CommandSettings(prefix=("/bin/sh",), suffix=(), ignore_error=True,
                                  includes=(), timeout=600.0, delivery=Delivery(10000, 300.0))
    assert got.watch is None


def test_sample_socket(tmp_path: Path, watch: str) -> None:
    assert settings(tmp_path, confxml(watch), "socket") == SocketSettings(
        watch="/opt/tongbu", ip="192.168.138.20", port=8009, format="sersync",
        delivery=Delivery(),
    )


def test_sample_refresh_cdn_is_accepted_without_its_directory(tmp_path: Path,
                                                              watch: str) -> None:
    got = settings(tmp_path, confxml(watch), "refreshCDN")
    assert got == CdnSettings(
        watch=SAMPLE_CDN_WATCH, domain="ccms.chinacache.com", port=80, username="xxxx",
        password="xxxx", base="http://pic.xoyo.com/cms", regex=False, match=SAMPLE_MATCH,
        method="HEAD", delivery=Delivery(),
    )
    assert "password=" not in repr(got)  # the password is never shown


def test_sample_http_gets_its_port_in_the_url(tmp_path: Path, watch: str) -> None:
    assert settings(tmp_path, confxml(watch), "http") == HttpSettings(
        watch="/opt/tongbu", url="http://192.168.138.20:8080/sersync", format="form",
        delivery=Delivery(),
    )


def test_repo_confxml_plugin_sections(tmp_path: Path, watch: str) -> None:
    text = REPO_CONFXML.read_bytes().replace(b'watch="/opt/tongbu"', b'watch="%s"'
                                              % watch.encode())
    cfg = load(tmp_path, text)
    assert config.plugin_settings(cfg, "command", True).prefix == (
        "/usr/bin/logger", "-t", "sersyncpy-command", "--")
    assert config.plugin_settings(cfg, "socket", True).watch == watch
    assert config.plugin_settings(cfg, "http", True).url == "http://192.168.138.20:8080/sersync"
    assert config.plugin_settings(cfg, "refreshCDN", False).watch == SAMPLE_CDN_WATCH
    with pytest.raises(ConfigError, match="directory does not exist"):
        config.plugin_settings(cfg, "refreshCDN", True)


def test_sample_plugin_started_in_sersync(tmp_path: Path, watch: str) -> None:
    cfg = load(tmp_path, confxml(watch, started="refreshCDN"))
    assert cfg.sersync_plugin == "refreshCDN"
    assert config.plugin_settings(cfg, cfg.sersync_plugin, False).domain == "ccms.chinacache.com"


def test_bad_plugin_sections_do_not_stop_loading(tmp_path: Path, watch: str) -> None:
    # Read only for the plugin in use: a section nobody runs may be wrong.
    text = edit(confxml(watch), (b'port="8009"', b'port="x"'), (b'prefix="/bin/sh"', b'prefix=""'))
    cfg = load(tmp_path, text)
    assert config.plugin_settings(cfg, "http", False).format == "form"
    with pytest.raises(ConfigError):
        config.plugin_settings(cfg, "socket", False)


# --- command -----------------------------------------------------------------------------


def test_command_all_fields(tmp_path: Path, watch: str) -> None:
    body = b"""        <param prefix='"/opt/my tool" --flag' suffix="-x 'a b'" ignoreError="false"
               timeout="1.5"/>
        <filter start="true">
            <include expression="(.*)\\.php"/>
            <exclude expression="/w/[^/]*\\.sh"/>
        </filter>"""
    got = settings(tmp_path, confxml(watch, one_plugin(body, "command",
                                                       b' queue="50" retrySeconds="2.5"')),
                   "command")
    assert got == CommandSettings(
        prefix=("/opt/my tool", "--flag"), suffix=("-x", "a b"), ignore_error=False,
        includes=(r"(.*)\.php", r"/w/[^/]*\.sh"), timeout=1.5, delivery=Delivery(50, 2.5),
    )
    assert command_argv(got, "/w/a b.php") == [b"/opt/my tool", b"--flag", b"/w/a b.php",
                                                b"-x", b"a b"]


def test_command_prefix_is_shlex_split(tmp_path: Path, watch: str) -> None:
    body = b"""        <param prefix="/bin/echo -n"/>"""
    got = settings(tmp_path, confxml(watch, one_plugin(body, "command")), "command")
    assert (got.prefix, got.suffix, got.ignore_error) == (("/bin/echo", "-n"), (), False)
    assert got.includes == () and got.timeout == 600.0


def test_command_includes_only_when_the_filter_is_started(tmp_path: Path, watch: str) -> None:
    # Not started: the expressions are not read at all, even an invalid one.
    body = b"""        <param prefix="/bin/true"/>
        <filter start="false"><include expression="(.*\\.php"/></filter>"""
    got = settings(tmp_path, confxml(watch, one_plugin(body, "command")), "command")
    assert got.includes == ()
    body = b"""        <param prefix="/bin/true"/>
        <filter><include expression="(.*)\\.php"/></filter>"""
    assert settings(tmp_path, confxml(watch, one_plugin(body, "command")), "command").includes == ()


def test_command_ignore_error_only_when_exactly_true(tmp_path: Path, watch: str) -> None:
    for value, expected in [(b"true", True), (b"True", False), (b"1", False), (b"", False)]:
        body = b'        <param prefix="/bin/true" ignoreError="%s"/>' % value
        got = settings(tmp_path, confxml(watch, one_plugin(body, "command")), "command")
        assert got.ignore_error is expected, value


def test_command_standalone_needs_no_directory(tmp_path: Path, watch: str) -> None:
    cfg = load(tmp_path, confxml(watch))
    got = config.plugin_settings(cfg, "command", True)
    assert standalone_roots(cfg, got) == [watch]  # the <sersync> localpaths


# --- socket ------------------------------------------------------------------------------


def test_socket_json_format_and_standalone_watch(tmp_path: Path, watch: str) -> None:
    body = b"""        <localpath watch="%s/">
            <deshost ip="127.0.0.1" port="9000" format="json"/>
        </localpath>""" % watch.encode()
    cfg = load(tmp_path, confxml(watch, one_plugin(body, "socket", b' queue="7"')))
    got = config.plugin_settings(cfg, "socket", True)
    assert got == SocketSettings(watch=watch, ip="127.0.0.1", port=9000, format="json",
                                 delivery=Delivery(7, 300.0))
    assert standalone_roots(cfg, got) == [watch]
    plugin = build("socket", got)
    plugin.close()


def test_socket_standalone_watch_must_be_a_directory(tmp_path: Path, watch: str) -> None:
    text = confxml(watch)  # socket watches /opt/tongbu, which does not exist here
    assert settings_error(tmp_path, text, "socket", SOCKET_LOCALPATH, standalone=True) == (
        '<localpath watch="/opt/tongbu">: directory does not exist')
    (tmp_path / "file").write_text("x")
    text = edit(text, (SOCKET_LOCALPATH, b'<localpath watch="%s/file">\n<deshost ip='
                       % str(tmp_path).encode()))
    assert settings_error(tmp_path, text, "socket", b"/file", standalone=True).endswith(
        "/file\">: not a directory")
    assert settings(tmp_path, text, "socket", standalone=False).watch == f"{tmp_path}/file"


def test_cdn_standalone_watch_must_exist(tmp_path: Path, watch: str) -> None:
    text = confxml(watch)
    assert settings_error(tmp_path, text, "refreshCDN", b"/data0/", standalone=True) == (
        '<localpath watch="/data0/htdocs/cms.xoyo.com/site/">: directory does not exist')
    text = edit(text, (b'watch="/data0/htdocs/cms.xoyo.com/site/"', b'watch="%s/"'
                       % watch.encode()))
    assert settings(tmp_path, text, "refreshCDN", standalone=True).watch == watch


# --- refreshCDN --------------------------------------------------------------------------


def test_cdn_all_fields(tmp_path: Path, watch: str) -> None:
    body = b"""        <localpath watch="/data0/htdocs/cms.xoyo.com/site">
            <cdninfo domainname="ccms.chinacache.com" port="80" username="u" passwd="p"
                     method="GET"/>
            <sendurl base="http://pic.xoyo.com/cms"/>
            <regexurl regex="true" match="cms.xoyo.com/site([/a-zA-Z0-9]*).xoyo.com/images"/>
        </localpath>"""
    text = confxml(watch, one_plugin(body, "refreshCDN", b' retrySeconds="30"'))
    assert settings(tmp_path, text, "refreshCDN") == CdnSettings(
        watch=SAMPLE_CDN_WATCH, domain="ccms.chinacache.com", port=80, username="u",
        password="p", base="http://pic.xoyo.com/cms", regex=True, match=SAMPLE_MATCH,
        method="GET", delivery=Delivery(10000, 30.0),
    )


def test_cdn_match_need_not_compile_when_regex_is_false(tmp_path: Path, watch: str) -> None:
    text = edit(confxml(watch), (SAMPLE_MATCH.encode(), b"site(["))
    assert settings(tmp_path, text, "refreshCDN").match == "site(["


def test_cdn_bad_regex(tmp_path: Path, watch: str) -> None:
    text = edit(confxml(watch), (SAMPLE_MATCH.encode(), b"site(["),
                (b'regex="false"', b'regex="true"'))
    message = settings_error(tmp_path, text, "refreshCDN", b"<regexurl")
    assert message.startswith('<regexurl match="site([">: invalid regular expression: ')


@pytest.mark.parametrize(("change", "needle", "expected"), [
    ((b' passwd="xxxx"', b""), b"<cdninfo", "<cdninfo>: missing required attribute passwd"),
    ((b'passwd="xxxx"', b'passwd=""'), b"<cdninfo", '<cdninfo passwd="">: must not be empty'),
    ((b'username="xxxx"', b'username=" "'), b"<cdninfo",
     '<cdninfo username=" ">: must not be empty'),
    ((b'domainname="ccms.chinacache.com"', b'domainname=""'), b"<cdninfo",
     '<cdninfo domainname="">: must not be empty'),
    ((b'port="80"', b'port="eighty"'), b"<cdninfo",
     '<cdninfo port="eighty">: not a port number (1..65535)'),
    ((b'passwd="xxxx"', b'passwd="xxxx" method="POST"'), b"<cdninfo",
     '<cdninfo method="POST">: expected one of HEAD, GET'),
    ((b'<sendurl base="http://pic.xoyo.com/cms"/>', b""), b'<localpath watch="/data0',
     "<localpath>: missing required element <sendurl>"),
    ((b'base="http://pic.xoyo.com/cms"', b'base=""'), b"<sendurl",
     '<sendurl base="">: must not be empty'),
    ((b'regex="false" ', b""), b"<regexurl", "<regexurl>: missing required attribute regex"),
    ((b'match="cms.xoyo.com/site([/a-zA-Z0-9]*).xoyo.com/images"', b'match=""'),
     b"<regexurl", '<regexurl match="">: must not be empty'),
    ((b'watch="/data0/htdocs/cms.xoyo.com/site/"', b'watch=""'), b'<localpath watch=""',
     '<localpath watch="">: must not be empty'),
])
def test_cdn_errors(tmp_path: Path, watch: str, change: tuple[bytes, bytes], needle: bytes,
                    expected: str) -> None:
    text = edit(confxml(watch), change)
    assert settings_error(tmp_path, text, "refreshCDN", needle) == expected


def test_cdn_missing_cdninfo(tmp_path: Path, watch: str) -> None:
    text = edit(confxml(watch), (
        b'<cdninfo domainname="ccms.chinacache.com" port="80" username="xxxx" passwd="xxxx"/>',
        b""))
    assert settings_error(tmp_path, text, "refreshCDN", b'<localpath watch="/data0') == (
        "<localpath>: missing required element <cdninfo>")


def test_cdn_missing_localpath(tmp_path: Path, watch: str) -> None:
    text = confxml(watch, one_plugin(b"", "refreshCDN"))
    assert settings_error(tmp_path, text, "refreshCDN", b'<plugin name="refreshCDN">') == (
        "<plugin>: missing required element <localpath>")


# --- http --------------------------------------------------------------------------------


def http_section(deshost: bytes, attributes: bytes = b"") -> bytes:
    body = b"""        <localpath watch="/opt/tongbu">
            <deshost %s/>
        </localpath>""" % deshost
    return one_plugin(body, "http", attributes)


@pytest.mark.parametrize(("deshost", "url", "fmt"), [
    (b'url="http://h/x" port="8080"', "http://h:8080/x", "form"),
    (b'url="http://h" port="8080"', "http://h:8080", "form"),
    (b'url="https://h/x?a=1" port="8443"', "https://h:8443/x?a=1", "form"),
    (b'url="http://user:pw@h/x" port="8080"', "http://user:pw@h:8080/x", "form"),
    (b'url="http://[::1]/x" port="8080"', "http://[::1]:8080/x", "form"),
    (b'url="http://h:81/x" port="8080"', "http://h:81/x", "form"),
    (b'url="http://h/x" port="0"', "http://h/x", "form"),
    (b'url="http://h/x"', "http://h/x", "form"),
    (b'url=" http://h/x " format="json"', "http://h/x", "json"),
    (b'url="http://h/x" format="form"', "http://h/x", "form"),
])
def test_http_url_port_and_format(tmp_path: Path, watch: str, deshost: bytes, url: str,
                                  fmt: str) -> None:
    got = settings(tmp_path, confxml(watch, http_section(deshost)), "http")
    assert got == HttpSettings(watch="/opt/tongbu", url=url, format=fmt, delivery=Delivery())


def test_http_delivery_attributes(tmp_path: Path, watch: str) -> None:
    text = confxml(watch, http_section(b'url="http://h/x"', b' queue="1" retrySeconds="0.5"'))
    assert settings(tmp_path, text, "http").delivery == Delivery(1, 0.5)


def test_http_url_with_an_empty_port(tmp_path: Path, watch: str) -> None:
    text = confxml(watch, http_section(b'url="http://h:/x" port="8080"'))
    try:
        got = settings(tmp_path, text, "http")
    except ConfigError:
        return  # refusing the url would be fine too
    assert got.url == "http://h:8080/x"


@pytest.mark.parametrize(("deshost", "expected"), [
    (b'url="ftp://x"', '<deshost url="ftp://x">: not an http:// or https:// URL'),
    (b'url="http://"', '<deshost url="http://">: not an http:// or https:// URL'),
    (b'url="h/x"', '<deshost url="h/x">: not an http:// or https:// URL'),
    (b'url="http://h:99999/x"',
     '<deshost url="http://h:99999/x">: the URL\'s port is not a number (1..65535)'),
    (b'port="8080"', "<deshost>: missing required attribute url"),
    (b'url="http://h/x" port="x"',
     '<deshost port="x">: not a port number (1..65535, or 0 for none)'),
    (b'url="http://h/x" format="xml"', '<deshost format="xml">: expected one of form, json'),
])
def test_http_errors(tmp_path: Path, watch: str, deshost: bytes, expected: str) -> None:
    text = confxml(watch, http_section(deshost))
    assert settings_error(tmp_path, text, "http", b"<deshost") == expected


# --- socket errors, command errors, delivery errors ---------------------------------------


@pytest.mark.parametrize(("change", "expected"), [
    ((b'port="8009"', b'port="x"'), '<deshost port="x">: not a port number (1..65535)'),
    ((b'port="8009"', b'port="0"'), '<deshost port="0">: not a port number (1..65535)'),
    ((b'port="8009"', b'port="65536"'), '<deshost port="65536">: not a port number (1..65535)'),
    ((b' port="8009"', b""), "<deshost>: missing required attribute port"),
    ((b'ip="192.168.138.20"', b'ip=""'), '<deshost ip="">: must not be empty'),
    ((b'port="8009"', b'port="8009" format="xml"'),
     '<deshost format="xml">: expected one of sersync, json'),
])
def test_socket_errors(tmp_path: Path, watch: str, change: tuple[bytes, bytes],
                       expected: str) -> None:
    text = edit(confxml(watch), change)
    assert settings_error(tmp_path, text, "socket", b"<deshost ip=") == expected


def test_socket_missing_deshost(tmp_path: Path, watch: str) -> None:
    text = edit(confxml(watch), (b'<deshost ip="192.168.138.20" port="8009"/>', b""))
    line = line_of(text, b'<plugin name="socket">') + 1
    message = settings_error(tmp_path, text, "socket", line)
    assert message == "<localpath>: missing required element <deshost>"


@pytest.mark.parametrize(("param", "expected"), [
    (b'<param prefix=""/>', '<param prefix="">: must name the program to run (the changed '
     "path is its argument)"),
    (b'<param prefix="   "/>', '<param prefix="   ">: must name the program to run'),
    (b'<param suffix="x"/>', "<param>: missing required attribute prefix"),
    (b'<param prefix="\'/bin/sh"/>', "<param prefix=\"'/bin/sh\">: cannot be split into "
     "arguments: No closing quotation"),
    (b'<param prefix="/bin/sh" suffix="a &quot;b"/>', '<param suffix="a &quot;b">: cannot be '
     "split into arguments: No closing quotation"),
    (b'<param prefix="/bin/sh" timeout="0"/>',
     '<param timeout="0">: must be a positive number of seconds'),
    (b'<param prefix="/bin/sh" timeout="soon"/>',
     '<param timeout="soon">: not a number of seconds'),
])
def test_command_param_errors(tmp_path: Path, watch: str, param: bytes, expected: str) -> None:
    text = confxml(watch, one_plugin(b"        " + param, "command"))
    assert settings_error(tmp_path, text, "command", b"<param").startswith(expected)


def test_command_bad_include(tmp_path: Path, watch: str) -> None:
    body = b"""        <param prefix="/bin/true"/>
        <filter start="true">
            <include expression="(.*)\\.php"/>
            <include expression="(.*\\.sh"/>
        </filter>"""
    text = confxml(watch, one_plugin(body, "command"))
    message = settings_error(tmp_path, text, "command", b'"(.*\\.sh"')
    assert message.startswith('<include expression="(.*\\.sh">: invalid regular expression: ')


def test_command_include_without_expression(tmp_path: Path, watch: str) -> None:
    body = b"""        <param prefix="/bin/true"/>
        <filter start="true"><include/></filter>"""
    text = confxml(watch, one_plugin(body, "command"))
    assert settings_error(tmp_path, text, "command", b"<include/>") == (
        "<include>: missing required attribute expression")


def test_command_missing_param(tmp_path: Path, watch: str) -> None:
    text = confxml(watch, one_plugin(b"", "command"))
    assert settings_error(tmp_path, text, "command", b'<plugin name="command">') == (
        "<plugin>: missing required element <param>")


@pytest.mark.parametrize(("attributes", "expected"), [
    (b' queue="0"', '<plugin queue="0">: must be at least 1'),
    (b' queue="-5"', '<plugin queue="-5">: must be at least 1'),
    (b' queue="many"', '<plugin queue="many">: not an integer'),
    (b' retrySeconds="-1"', '<plugin retrySeconds="-1">: must be a positive number of seconds'),
    (b' retrySeconds="0"', '<plugin retrySeconds="0">: must be a positive number of seconds'),
    (b' retrySeconds="inf"', '<plugin retrySeconds="inf">: must be a positive number of seconds'),
    (b' retrySeconds="5m"', '<plugin retrySeconds="5m">: not a number of seconds'),
])
@pytest.mark.parametrize("name", ["command", "socket", "refreshCDN", "http"])
def test_delivery_errors(tmp_path: Path, watch: str, name: str, attributes: bytes,
                         expected: str) -> None:
    needle = b'<plugin name="%s">' % name.encode()
    text = edit(confxml(watch), (needle, b'<plugin name="%s"%s>' % (name.encode(), attributes)))
    assert settings_error(tmp_path, text, name, b'<plugin name="%s"' % name.encode()) == expected


def test_delivery_defaults_and_values(tmp_path: Path, watch: str) -> None:
    text = edit(confxml(watch), (b'<plugin name="socket">',
                                 b'<plugin name="socket" queue=" 12 " retrySeconds="1e1">'))
    assert settings(tmp_path, text, "socket").delivery == Delivery(queue=12, retry_seconds=10.0)
    assert settings(tmp_path, text, "command").delivery == Delivery(10000, 300.0)


# --- a missing section ---------------------------------------------------------------------


@pytest.mark.parametrize(("standalone", "why"), [
    (True, "needed by -m http"), (False, "named by <sersync><plugin>"),
])
def test_missing_plugin_section_names_the_file(tmp_path: Path, watch: str, standalone: bool,
                                               why: str) -> None:
    cfg = load(tmp_path, confxml(watch, b""))
    with pytest.raises(ConfigError) as caught:
        config.plugin_settings(cfg, "http", standalone)
    assert str(caught.value) == (
        f'{tmp_path / "confxml.xml"}: no top-level <plugin name="http"> element ({why})')
    assert caught.value.exit_code == 2


def test_first_section_of_a_name_is_used(tmp_path: Path, watch: str) -> None:
    plugins = (http_section(b'url="http://first/"') + http_section(b'url="ftp://second"'))
    assert settings(tmp_path, confxml(watch, plugins), "http").url == "http://first/"


# --- the registry: one table for the names, the readers and the classes ----------------------


def test_the_names_come_from_the_registry_table() -> None:
    assert registry.NAMES == tuple(registry.PLUGINS) == ("command", "socket", "refreshCDN",
                                                        "http")
    expected = "unknown plugin, expected one of command, socket, refreshCDN, http"
    with pytest.raises(ValueError, match=f"^{expected}$"):
        registry.plugin_name("mail")
    with pytest.raises(UsageError) as caught:
        cli.parse_plugin("mail")
    assert str(caught.value) == f"-m mail: {expected}"
    assert [cli.parse_plugin(name) for name in (None, *registry.NAMES)] == [None,
                                                                            *registry.NAMES]


def test_reading_a_config_imports_no_plugin_module() -> None:
    """The classes are imported when built (registry): a config is read without the plugins'
    modules, nor subprocess, http.client or ssl."""
    code = ("import sys, sersyncpy.config; print(sorted(m for m in sys.modules if m in "
            "('subprocess', 'http.client', 'ssl') or m.startswith('sersyncpy.plugins.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "['sersyncpy.plugins.registry', 'sersyncpy.plugins.settings']"
