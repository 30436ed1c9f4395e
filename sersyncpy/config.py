"""confxml.xml (sersync 2.5's format, plus a few additions) -> frozen dataclasses, via lxml.

Owns reading and checking the file only: every problem is one ConfigError line naming
file:line, element, attribute and value; a file only sersync's lenient parser took is repaired
first (xmlrepair). What the values do belongs to the modules using them.
"""

import functools
import os
import re
import shlex
import stat
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from lxml import etree

from sersyncpy import statefiles, xmlrepair
from sersyncpy.errors import ConfigError

PLUGIN_NAMES = ("command", "socket", "refreshCDN", "http")
DEFAULT_PLUGIN_QUEUE = 10000  # notices waiting for a plugin; more are dropped and counted
DEFAULT_PLUGIN_RETRY_SECONDS = 300.0  # a notice not delivered by then is dropped
DEFAULT_COMMAND_TIMEOUT = 600.0  # seconds a command plugin's program may run
DEFAULT_COMMON_PARAMS = ("-artuz",)
DEFAULT_METRICS_HOSTIP = "127.0.0.1"  # metrics are for the local Prometheus unless said
DEFAULT_MAX_PENDING = 100_000  # pending paths per remote (<failLog maxPending>)
DEFAULT_TIME_TO_EXECUTE = 60  # minutes, when <failLog> is absent
EMPTY_TIME_TO_EXECUTE = 120  # minutes, when timeToExecute is empty (as sersync)
DEFAULT_SCHEDULE = 600  # minutes
RSYNC_INT_MAX = 2**31 - 1  # rsync refuses a larger --timeout, and every call would fail

# (element under <inotify>, field of Inotify, sersync sample value used when it is absent)
_INOTIFY = (
    ("delete", "delete", True),
    ("createFolder", "create_folder", True),
    ("createFile", "create_file", False),
    ("closeWrite", "close_write", True),
    ("moveFrom", "move_from", True),
    ("moveTo", "move_to", True),
    ("attrib", "attrib", False),
    ("modify", "modify", False),
)


@dataclass(frozen=True)
class Remote:
    ip: str
    name: str  # rsync daemon module (or remote path in ssh mode)
    port: Optional[int]  # <remote port>, else <userDefinedPort port> when started, else None


@dataclass(frozen=True)
class LocalPath:
    watch: str  # absolute, normalised, no trailing slash
    remotes: tuple[Remote, ...]


@dataclass(frozen=True)
class Inotify:
    delete: bool
    create_folder: bool
    create_file: bool
    close_write: bool
    move_from: bool
    move_to: bool
    attrib: bool
    modify: bool
    # sersyncpy's <delete inFullSync="false">: recursive pushes (-r, crontab, directories sent
    # whole) delete nothing, so that trees merge (two-way pairs, hubs); deletions seen live
    # still go.
    delete_in_full_sync: bool = True


@dataclass(frozen=True)
class Filter:
    start: bool
    excludes: tuple[str, ...]  # regex sources; () when start is false
    # sersyncpy's addition, true by default: every name is replicated live. "false" is
    # sersync's rule: never a name starting with ".", ending with "~", or vim's "4913".
    keep_dotfiles: bool

    def compiled(self) -> tuple[re.Pattern, ...]:
        # DOTALL: in sersync's Boost regexes "." also matches a newline in a file name.
        return tuple(re.compile(expression, re.DOTALL) for expression in self.excludes)


@dataclass(frozen=True)
class Rsync:
    common_params: tuple[str, ...]
    auth: bool
    users: str  # "" when auth is off
    password_file: Optional[str]  # absolute; None when auth is off or the attribute is empty
    port: Optional[int]
    timeout: Optional[int]  # seconds
    ssh: bool
    ssh_command: str = "ssh"  # sersyncpy's <ssh command>: the remote shell, rsync splits it


@dataclass(frozen=True)
class FailLog:
    path: str
    time_to_execute: int  # minutes
    # sersyncpy's <failLog maxPending>: pending paths per remote beyond which they collapse
    # into one full sync of the root, so that memory stays bounded while a remote is down.
    max_pending: int = DEFAULT_MAX_PENDING


@dataclass(frozen=True)
class Crontab:
    start: bool
    schedule: int  # minutes
    excludes: tuple[str, ...]  # rsync exclude patterns; () when <crontabfilter> is off


@dataclass(frozen=True)
class Metrics:
    """sersyncpy's <metrics start hostip port>: Prometheus metrics, only when asked for.
    sersync's <host hostip port>, in nearly every config, was only printed: it opens no
    port (two instances on one host would collide)."""

    start: bool
    hostip: str  # 127.0.0.1 unless the config names another address
    port: int  # 0 when off


@dataclass(frozen=True)
class PluginSection:
    name: str
    element: Any = field(compare=False, hash=False)  # the lxml element, for the plugin to read
    line: int


@dataclass(frozen=True)
class Delivery:
    """sersyncpy's additions on a top-level <plugin>: how much may wait, and for how long."""

    queue: int = DEFAULT_PLUGIN_QUEUE
    retry_seconds: float = DEFAULT_PLUGIN_RETRY_SECONDS


@dataclass(frozen=True)
class CommandSettings:
    prefix: tuple[str, ...]  # argv before the path (shlex-split)
    suffix: tuple[str, ...]  # argv after the path
    ignore_error: bool
    includes: tuple[str, ...]  # regexes matched in full on the absolute path; () = every path
    timeout: float
    delivery: Delivery = Delivery()
    watch: Optional[str] = None  # command has no localpath of its own: <sersync>'s are used


@dataclass(frozen=True)
class SocketSettings:
    watch: str  # for -m socket only; in sync mode the <sersync> localpaths are watched
    ip: str
    port: int
    format: str  # "sersync": one connection per change carrying the path; "json": one line each
    delivery: Delivery = Delivery()


@dataclass(frozen=True)
class CdnSettings:
    watch: str  # its path is what the URL replaces (regex="false")
    domain: str
    port: int
    username: str
    password: str = field(repr=False)
    base: str = ""
    regex: bool = False
    match: str = ""
    method: str = "HEAD"  # sersync's request; method="GET" for APIs that want it
    delivery: Delivery = Delivery()


@dataclass(frozen=True)
class HttpSettings:
    watch: str
    url: str  # with <deshost port> applied when the url names none
    format: str  # "form": one form POST per change, as sersync's code; "json": one per batch
    delivery: Delivery = Delivery()


PluginSettings = Union[CommandSettings, SocketSettings, CdnSettings, HttpSettings]


@dataclass(frozen=True)
class Config:
    source: str
    metrics: Metrics
    debug: bool
    xfs: bool
    filter: Filter
    inotify: Inotify
    localpaths: tuple[LocalPath, ...]
    rsync: Rsync
    fail_log: FailLog
    crontab: Crontab
    sersync_plugin: Optional[str]
    plugins: tuple[PluginSection, ...]
    # What was repaired in a file sersync 2.5 read and lxml would not: at most one line, for
    # the CLI to log as a WARNING once logging is set up.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def plugin(self, name: str) -> Optional[PluginSection]:
        """The first top-level <plugin> with this name, as sersync picks it."""
        return next((section for section in self.plugins if section.name == name), None)


def load(path: str) -> Config:
    try:
        with open(path, "rb") as file:
            text = file.read()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{path}: cannot read: {_one_line(reason)}") from None
    return parse(text, path)


def parse(text: bytes, source: str) -> Config:
    root, repairs = _tree(text, source)
    try:
        cfg = _config(root, source)
    except _Invalid as exc:
        raise ConfigError(_message(source, exc) + _doubts(repairs)) from exc.__cause__
    warnings = _warnings(root, cfg)
    if repairs:
        summary = xmlrepair.summary(repairs)
        warnings.insert(0, f"{source}: repaired what sersync 2.5 accepted: {summary}")
    return replace(cfg, warnings=tuple(warnings))


def _warnings(head, cfg: Config) -> list[str]:
    """What the file says that sersyncpy reads differently than one would think."""
    found = []
    auth = _child(_child(_child(head, "sersync"), "rsync"), "auth")
    if cfg.rsync.ssh and cfg.rsync.auth:
        found.append(f"{cfg.source}:{auth.sourceline}: <auth start=\"true\"> is not used in "
                     "ssh mode: rsync takes a password file only from a daemon (sersync passed "
                     "it, and rsync refused every transfer), so it is not read; users still "
                     "names the ssh login")
    if cfg.rsync.ssh:
        found += [f"{cfg.source}: <remote ip=\"{remote.ip}\" name=\"{remote.name}\">: port "
                  f"{remote.port} (<remote port> or <userDefinedPort>) is not used over ssh "
                  f"(rsync's --port is for daemons): give it to ssh, <ssh command=\"ssh -p "
                  f"{remote.port}\">"
                  for localpath in cfg.localpaths for remote in localpath.remotes
                  if remote.port]
    return found


def _doubts(repairs: list[xmlrepair.Repair]) -> str:
    """For an error in a repaired file: the repairs that may have caused it (a value that
    lost its closing quote keeps the opening one, as sersync kept it)."""
    doubtful = [one for one in repairs if one.doubtful]
    if not doubtful:
        return ""
    return (f" (after repairing malformed XML as sersync 2.5 read it: "
            f"{xmlrepair.summary(doubtful)})")


# --- errors -------------------------------------------------------------------------------


class _Invalid(Exception):
    """A problem at one element (and attribute); parse() adds the file name."""

    def __init__(self, element, attribute: Optional[str], problem: str):
        super().__init__(problem)
        self.element = element
        self.attribute = attribute
        self.problem = problem


def _message(source: str, exc: _Invalid) -> str:
    line = exc.element.sourceline or 0
    return f"{source}:{line}: {_describe(exc.element, exc.attribute)}: {_one_line(exc.problem)}"


def _describe(element, attribute: Optional[str]) -> str:
    found = _attribute(element, attribute) if attribute else None
    if found is None:
        return f"<{element.tag}>"
    name, value = found
    return f'<{element.tag} {name}="{_escape(value)}">'


def _escape(value: str) -> str:
    """The value as it could be written in the file, on one line."""
    return "".join(
        "&quot;" if char == '"' else char if char.isprintable() else f"&#{ord(char)};"
        for char in value
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _guarded(function: Callable) -> Callable:
    """Turn any unexpected exception of a section reader into an error at its element."""

    @functools.wraps(function)
    def wrapper(element, *args):
        try:
            return function(element, *args)
        except _Invalid:
            raise
        except Exception as exc:
            raise _Invalid(element, None, f"unexpected {type(exc).__name__}: {exc}") from exc

    return wrapper


# --- XML access ---------------------------------------------------------------------------
# sersync's XML parser matches tag and attribute names case-insensitively; so do we.

_REQUIRED = object()


def _tree(text: bytes, source: str) -> tuple[Any, list[xmlrepair.Repair]]:
    """The root element, and what was repaired: a file lxml refuses is read as sersync 2.5's
    lenient parser read it (xmlrepair), on the same lines; a valid file is never touched."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    try:
        root = _strict(text)
        return root, xmlrepair.utf8_values(root)
    except etree.XMLSyntaxError as exc:
        refused = exc
    except Exception as exc:
        raise ConfigError(f"{source}:1: malformed XML: {_one_line(exc)}") from None
    try:
        repaired, repairs = xmlrepair.repair(text)
    except xmlrepair.Unrepairable as exc:
        raise ConfigError(f"{source}:{exc.line}: malformed XML: {exc.problem}") from None
    if repairs:
        try:
            root = _strict(repaired)
            return root, repairs + xmlrepair.utf8_values(root)
        except etree.XMLSyntaxError as exc:  # what the repair does not cover: lxml's words
            refused = exc
    line = refused.lineno or 1
    raise ConfigError(f"{source}:{line}: malformed XML: {_one_line(refused.msg)}") from None


def _strict(text: bytes):
    # Bytes, so that the sample's encoding="ISO-8859-1" declaration is honoured; comments
    # removed, so that "the i-th child of <filter>" means the i-th element, as in sersync.
    parser = etree.XMLParser(
        remove_comments=True, remove_pis=True, resolve_entities=False, no_network=True
    )
    return etree.fromstring(text, parser)


def _elements(parent) -> list:
    return [] if parent is None else [child for child in parent if isinstance(child.tag, str)]


def _children(parent, tag: str) -> list:
    return [child for child in _elements(parent) if child.tag.lower() == tag.lower()]


def _child(parent, tag: str):
    found = _children(parent, tag)
    return found[0] if found else None


def _required_child(parent, tag: str):
    child = _child(parent, tag)
    if child is None:
        raise _Invalid(parent, None, f"missing required element <{tag}>")
    return child


def _attribute(element, name: str) -> Optional[tuple[str, str]]:
    """(name as written, value), or None."""
    for key, value in element.attrib.items():
        if key.lower() == name.lower():
            return key, value
    return None


def _value(element, name: str, convert: Callable, default: Any = _REQUIRED) -> Any:
    """Attribute `name` of `element` through `convert`; `default` if either is absent."""
    if element is None:
        return None if default is _REQUIRED else default
    found = _attribute(element, name)
    if found is None:
        if default is _REQUIRED:
            raise _Invalid(element, None, f"missing required attribute {name}")
        return default
    if xmlrepair.NOT_TEXT in found[1]:  # bytes sersync passed on as they were; we cannot
        raise _Invalid(element, found[0], _NOT_TEXT_PROBLEM)
    try:
        return convert(found[1])
    except Exception as exc:
        problem = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise _Invalid(element, found[0], problem) from exc


_NOT_TEXT_PROBLEM = (f"holds bytes that are not UTF-8 (shown as {xmlrepair.NOT_TEXT}): save the "
                     "file in UTF-8, or declare its encoding")


def _start(element) -> bool:
    return _value(element, "start", _boolean, False)


def _when_started(element, name: str, convert: Callable) -> Any:
    return _value(element, name, convert) if _start(element) else None


# --- converters: one per kind of value; each raises ValueError saying what is wrong -------


def _boolean(value: str) -> bool:
    return value == "true"  # sersync: only the exact string "true" is true


def _boolean_default_true(value: str) -> bool:
    return value != "false"  # for sersyncpy's additions that are on unless turned off


def _integer(value: str) -> int:
    text = value.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError("not an integer")
    return int(text)


def _non_negative(value: str) -> int:
    number = _integer(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _seconds_for_rsync(value: str) -> int:
    number = _non_negative(value)
    if number > RSYNC_INT_MAX:
        raise ValueError(f"too large (rsync takes at most {RSYNC_INT_MAX})")
    return number


def _minutes(value: str) -> int:
    # sersync's atoi turns garbage and <= 0 into 600 silently; we refuse them.
    try:
        number = _integer(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError("not a positive number of minutes")
    return number


def _port(value: str) -> int:
    try:
        number = _integer(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise ValueError("not a port number (1..65535)")
    return number


def _port_or_zero(value: str) -> int:
    try:
        return 0 if _integer(value) == 0 else _port(value)
    except ValueError:
        raise ValueError("not a port number (1..65535, or 0 for none)") from None


def _positive(value: str) -> int:
    number = _integer(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError("not a number of seconds") from None
    if not 0 < number < float("inf"):
        raise ValueError("must be a positive number of seconds")
    return number


def _choice(*choices: str) -> Callable[[str], str]:
    def choose(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return choose


# Paths are trimmed: sersync put them on a shell command line (cd W && rsync ...
# --password-file=P), which dropped white space around them.


def _path(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return os.path.abspath(value.strip())


def _http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError("the URL's port is not a number (1..65535)") from None
    return value.strip()


def _nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _argv(value: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"cannot be split into arguments: {exc}") from None


def _remote_shell(value: str) -> str:
    _program(value)  # rsync splits it the same way; check it names a program
    return value.strip()


def _program(value: str) -> tuple[str, ...]:
    argv = _argv(value)
    if not argv:
        raise ValueError("must name the program to run (the changed path is its argument)")
    return argv


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def _plugin_name(value: str) -> str:
    if value not in PLUGIN_NAMES:
        raise ValueError(f"unknown plugin, expected one of {', '.join(PLUGIN_NAMES)}")
    return value


def _directory(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    path = os.path.abspath(value.strip())  # also strips trailing slashes, as sersync strips one
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ValueError("directory does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot use directory: {exc.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise ValueError("not a directory")
    return path


def _password_file(value: str) -> Optional[str]:
    if not value.strip():
        return None  # as sersync: no --password-file at all
    path = os.path.abspath(value.strip())
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ValueError(f"cannot use password file: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ValueError("not a regular file")
    # Owner-only, as 0600 or 0400: rsync itself refuses a file others can read.
    if mode & 0o077:
        raise ValueError(f"mode {mode & 0o777:04o}, must be 0600 (readable by its owner only)")
    return path


def _fail_log_path(value: str) -> str:
    if not value.strip():
        return statefiles.default_fail_log()  # sersync would run "/bin/sh " on stdin
    path = os.path.abspath(value.strip())
    if os.path.isdir(path):
        raise ValueError("is a directory")
    # The state directory is created at start; any other must be there already.
    if not os.path.isdir(os.path.dirname(path)) and os.path.dirname(path) != statefiles.state_dir():
        raise ValueError("its directory does not exist")
    return path


def _time_to_execute(value: str) -> int:
    return EMPTY_TIME_TO_EXECUTE if not value.strip() else _non_negative(value)


# --- sections -----------------------------------------------------------------------------


@_guarded
def _config(head, source: str) -> Config:
    if head.tag.lower() != "head":
        raise _Invalid(head, None, "the root element must be <head>")
    sersync = _required_child(head, "sersync")
    rsync = _rsync(sersync)
    plugins = _plugins(head)
    return Config(
        source=source,
        metrics=_metrics(head),
        debug=_start(_child(head, "debug")),
        xfs=_value(_child(head, "fileSystem"), "xfs", _boolean, False),
        filter=_filter(head),
        inotify=_inotify(head),
        localpaths=_localpaths(sersync, rsync.port),
        rsync=rsync,
        fail_log=_fail_log(sersync),
        crontab=_crontab(sersync),
        sersync_plugin=_sersync_plugin(sersync, plugins),
        plugins=plugins,
    )


@_guarded
def _metrics(head) -> Metrics:
    element = _child(head, "metrics")  # not <host>: sersync only printed it
    if not _start(element):
        return Metrics(False, DEFAULT_METRICS_HOSTIP, 0)
    return Metrics(
        start=True,
        hostip=_value(element, "hostip", _nonempty, DEFAULT_METRICS_HOSTIP),
        port=_value(element, "port", _port),
    )


@_guarded
def _filter(head) -> Filter:
    element = _child(head, "filter")
    start = _start(element)
    return Filter(
        start=start,
        excludes=_expressions(element, _regex) if start else (),
        # Every name by default; keepDotfiles="false" brings sersync's rule back.
        keep_dotfiles=_value(element, "keepDotfiles", _boolean_default_true, True),
    )


def _expressions(parent, convert: Callable) -> tuple[str, ...]:
    # sersync reads the expression of the i-th child whatever its tag, so any element counts.
    return tuple(_value(child, "expression", convert) for child in _elements(parent))


@_guarded
def _inotify(head) -> Inotify:
    element = _child(head, "inotify")
    flags = {}
    for tag, name, default in _INOTIFY:
        child = _child(element, tag)
        flags[name] = default if child is None else _start(child)
    delete = _child(element, "delete")
    flags["delete_in_full_sync"] = _value(delete, "inFullSync", _boolean, True)
    return Inotify(**flags)


@_guarded
def _localpaths(sersync, port: Optional[int]) -> tuple[LocalPath, ...]:
    # sersync uses only the first <localpath>; we use all of them.
    elements = _children(sersync, "localpath")
    if not elements:
        raise _Invalid(sersync, None, "missing required element <localpath>")
    localpaths, lines = [], {}
    for element in elements:
        localpath = _localpath(element, port)
        if localpath.watch in lines:
            # One inotify watch per directory: the second block would never get its events.
            problem = f"same directory as the <localpath> at line {lines[localpath.watch]}"
            raise _Invalid(element, "watch", problem)
        lines[localpath.watch] = element.sourceline
        localpaths.append(localpath)
    return tuple(localpaths)


def _localpath(element, port: Optional[int]) -> LocalPath:
    watch = _value(element, "watch", _directory)
    remotes = _children(element, "remote")
    if not remotes:
        raise _Invalid(element, None, "missing required element <remote>")
    seen: dict[tuple, int] = {}
    parsed = []
    for element in remotes:
        remote = _remote(element, port)
        key = (remote.ip, remote.name, remote.port)
        if key in seen:  # two lanes would push the same changes to one place, racing
            raise _Invalid(element, "name", f"same remote as the <remote> at line {seen[key]}")
        seen[key] = element.sourceline
        parsed.append(remote)
    return LocalPath(watch, tuple(parsed))


def _remote(element, port: Optional[int]) -> Remote:
    return Remote(
        ip=_value(element, "ip", _nonempty),
        name=_value(element, "name", _nonempty),
        port=_value(element, "port", _port, port),  # sersyncpy's addition
    )


@_guarded
def _rsync(sersync) -> Rsync:
    element = _child(sersync, "rsync")
    auth = _child(element, "auth")
    started = _start(auth)
    ssh = _start(_child(element, "ssh"))
    return Rsync(
        common_params=_value(
            _child(element, "commonParams"), "params", _argv, DEFAULT_COMMON_PARAMS
        ),
        auth=started,
        users=_value(auth, "users", _nonempty) if started else "",
        # Over ssh rsync takes no password file (sersync passed it, and every transfer
        # failed): not read, not required; _warnings says so.
        password_file=(_value(auth, "passwordfile", _password_file, None)
                       if started and not ssh else None),
        port=_when_started(_child(element, "userDefinedPort"), "port", _port),
        timeout=_when_started(_child(element, "timeout"), "time", _seconds_for_rsync),
        ssh=ssh,
        ssh_command=_value(_child(element, "ssh"), "command", _remote_shell, "ssh"),
    )


@_guarded
def _fail_log(sersync) -> FailLog:
    element = _child(sersync, "failLog")
    if element is None:
        return FailLog(statefiles.default_fail_log(), DEFAULT_TIME_TO_EXECUTE)
    return FailLog(
        path=_value(element, "path", _fail_log_path, statefiles.default_fail_log()),
        time_to_execute=_value(element, "timeToExecute", _time_to_execute, EMPTY_TIME_TO_EXECUTE),
        max_pending=_value(element, "maxPending", _positive, DEFAULT_MAX_PENDING),
    )


@_guarded
def _crontab(sersync) -> Crontab:
    element = _child(sersync, "crontab")
    start = _start(element)
    # sersync ignores the schedule while start is false; so do we, bad values included.
    minutes = _minutes if start else _lenient(_minutes, DEFAULT_SCHEDULE)
    crontabfilter = _child(element, "crontabfilter")
    return Crontab(
        start=start,
        schedule=_value(element, "schedule", minutes, DEFAULT_SCHEDULE),
        excludes=_expressions(crontabfilter, str) if _start(crontabfilter) else (),
    )


def _lenient(convert: Callable, default: Any) -> Callable:
    """For values sersync ignores while their start is false: bad ones become the default."""

    def lenient(value: str) -> Any:
        try:
            return convert(value)
        except ValueError:
            return default

    return lenient


@_guarded
def _plugins(head) -> tuple[PluginSection, ...]:
    return tuple(
        PluginSection(_value(element, "name", _plugin_name), element, element.sourceline or 0)
        for element in _children(head, "plugin")
    )


@_guarded
def _sersync_plugin(sersync, plugins: tuple[PluginSection, ...]) -> Optional[str]:
    element = _child(sersync, "plugin")
    if not _start(element):
        return None
    name = _value(element, "name", _plugin_name)
    if not any(section.name == name for section in plugins):
        raise _Invalid(element, "name", f'no top-level <plugin name="{name}"> section')
    return name


# --- plugin settings ----------------------------------------------------------------------
# Read only for the plugin in use (sync mode's <sersync><plugin start="true"> or -m NAME), so
# that the sample's sections for plugins nobody runs, naming directories that do not exist
# here, are no obstacle; as in sersync.


def plugin_settings(cfg: Config, name: str, standalone: bool) -> PluginSettings:
    """The settings of plugin `name`; `standalone` (-m) also needs its watch directory."""
    section = cfg.plugin(name)
    if section is None:
        why = f"needed by -m {name}" if standalone else "named by <sersync><plugin>"
        raise ConfigError(f'{cfg.source}: no top-level <plugin name="{name}"> element ({why})')
    try:
        return _PLUGIN_READERS[name](section.element, standalone)
    except _Invalid as exc:
        raise ConfigError(_message(cfg.source, exc)) from exc.__cause__


def _delivery(plugin) -> Delivery:
    return Delivery(
        queue=_value(plugin, "queue", _positive, DEFAULT_PLUGIN_QUEUE),
        retry_seconds=_value(plugin, "retrySeconds", _seconds, DEFAULT_PLUGIN_RETRY_SECONDS),
    )


def _plugin_watch(plugin, standalone: bool) -> tuple[Any, str]:
    """(the plugin's first <localpath>, its watch): sersync reads only the first."""
    localpath = _required_child(plugin, "localpath")
    return localpath, _value(localpath, "watch", _directory if standalone else _path)


@_guarded
def _command_settings(plugin, _standalone: bool) -> CommandSettings:
    param = _required_child(plugin, "param")
    filter_ = _child(plugin, "filter")
    includes = ()
    if _start(filter_):
        includes = tuple(_value(child, "expression", _regex) for child in _elements(filter_))
    return CommandSettings(
        prefix=_value(param, "prefix", _program),
        suffix=_value(param, "suffix", _argv, ()),
        ignore_error=_value(param, "ignoreError", _boolean, False),
        includes=includes,
        timeout=_value(param, "timeout", _seconds, DEFAULT_COMMAND_TIMEOUT),
        delivery=_delivery(plugin),
    )


@_guarded
def _socket_settings(plugin, standalone: bool) -> SocketSettings:
    localpath, watch = _plugin_watch(plugin, standalone)
    deshost = _required_child(localpath, "deshost")
    return SocketSettings(
        watch=watch,
        ip=_value(deshost, "ip", _nonempty),
        port=_value(deshost, "port", _port),
        format=_value(deshost, "format", _choice("sersync", "json"), "sersync"),
        delivery=_delivery(plugin),
    )


@_guarded
def _cdn_settings(plugin, standalone: bool) -> CdnSettings:
    localpath, watch = _plugin_watch(plugin, standalone)
    info = _required_child(localpath, "cdninfo")
    regexurl = _required_child(localpath, "regexurl")
    regex = _value(regexurl, "regex", _boolean)
    return CdnSettings(
        watch=watch,
        domain=_value(info, "domainname", _nonempty),
        port=_value(info, "port", _port),
        username=_value(info, "username", _nonempty),
        password=_value(info, "passwd", _nonempty),
        method=_value(info, "method", _choice("HEAD", "GET"), "HEAD"),
        base=_value(_required_child(localpath, "sendurl"), "base", _nonempty),
        regex=regex,
        match=_value(regexurl, "match", _regex if regex else _nonempty),
        delivery=_delivery(plugin),
    )


@_guarded
def _http_settings(plugin, standalone: bool) -> HttpSettings:
    localpath, watch = _plugin_watch(plugin, standalone)
    deshost = _required_child(localpath, "deshost")
    url = _value(deshost, "url", _http_url)
    port = _value(deshost, "port", _port_or_zero, 0)
    parts = urlsplit(url)
    if port and parts.port is None:
        # sersync's code reads port but never uses it; a url without one gets it here.
        url = urlunsplit(parts._replace(netloc=f"{parts.netloc.rstrip(':')}:{port}"))
    return HttpSettings(
        watch=watch,
        url=url,
        format=_value(deshost, "format", _choice("form", "json"), "form"),
        delivery=_delivery(plugin),
    )


_PLUGIN_READERS = {
    "command": _command_settings,
    "socket": _socket_settings,
    "refreshCDN": _cdn_settings,
    "http": _http_settings,
}
