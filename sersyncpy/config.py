"""confxml.xml (sersync 2.5's format, plus a few additions) -> Config, frozen dataclasses, one
reader per section. Errors are one ConfigError line (configxml); values are converted by convert;
plugin settings are plugins/settings.py's; what the values do, the modules using them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from sersyncpy import convert, pushpolicy, statefiles, xmlrepair
from sersyncpy.configxml import (
    Element,
    Invalid,
    child,
    children,
    doubts,
    elements,
    guarded,
    message,
    one_line,
    required_child,
    start,
    tree,
    value,
    when_started,
)
from sersyncpy.errors import ConfigError
from sersyncpy.plugins import registry
from sersyncpy.plugins.settings import PluginSettings

DEFAULT_COMMON_PARAMS = ("-artuz",)
# <watcher use>: fanotify where it can run, or one of the two whatever happens.
WATCHERS = ("auto", "inotify", "fanotify")
DEFAULT_METRICS_HOSTIP = "127.0.0.1"  # metrics are for the local Prometheus unless said
# Pending paths per remote (<failLog maxPending>), each ~0.6 KiB of memory while pending:
# with 3 remotes under stress-ng and a raised inotify queue, 100,000 peaked at 138 MiB,
# 20,000 at 65 MiB. Past it, one full sync (rsync's quick check) replaces them.
DEFAULT_MAX_PENDING = 20_000
DEFAULT_TIME_TO_EXECUTE = 60  # minutes, when <failLog> is absent
EMPTY_TIME_TO_EXECUTE = 120  # minutes, when timeToExecute is empty (as sersync)
DEFAULT_SCHEDULE = 600  # minutes

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

    def compiled(self) -> tuple[re.Pattern[str], ...]:
        return tuple(convert.pattern(expression) for expression in self.excludes)


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
    # sersyncpy's <latency budgetMs>, in seconds: how long a change may wait to be gathered
    # with others while changes keep coming (pushpolicy.py); 0: every push goes at once.
    latency_budget: float = pushpolicy.DEFAULT_BUDGET


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
    element: Element = field(compare=False, hash=False)  # for the plugin's reader (registry)
    line: int


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
    # sersyncpy's <watcher use>: "auto" (fanotify where it can run, else inotify), "inotify"
    # or "fanotify".
    watcher: str = "auto"
    # What was repaired in a file sersync 2.5 read and lxml would not: at most one line, for
    # the CLI to log as a WARNING once logging is set up.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def plugin(self, name: str) -> Optional[PluginSection]:
        """The first top-level <plugin> with this name, as sersync picks it."""
        return next((section for section in self.plugins if section.name == name), None)


def load(path: str) -> Config:
    """The config in file `path`; ConfigError (one line) when it cannot be used."""
    try:
        with open(path, "rb") as file:
            text = file.read()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{path}: cannot read: {one_line(reason)}") from None
    return parse(text, path)


def parse(text: bytes, source: str) -> Config:
    """The config in `text`, read from `source` (the name errors give)."""
    root, repairs = tree(text, source)
    try:
        cfg = _config(root, source)
    except Invalid as exc:
        raise ConfigError(message(source, exc) + doubts(repairs)) from exc.__cause__
    warnings = _warnings(root, cfg)
    if repairs:
        summary = xmlrepair.summary(repairs)
        warnings.insert(0, f"{source}: repaired what sersync 2.5 accepted: {summary}")
    return replace(cfg, warnings=tuple(warnings))


def _warnings(head: Element, cfg: Config) -> list[str]:
    """What the file says that sersyncpy reads differently than one would think."""
    found = []
    auth = child(child(child(head, "sersync"), "rsync"), "auth")
    if cfg.rsync.ssh and cfg.rsync.auth and auth is not None:
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


# --- sections -----------------------------------------------------------------------------


@guarded
def _config(head: Element, source: str) -> Config:
    if head.tag.lower() != "head":
        raise Invalid(head, None, "the root element must be <head>")
    sersync = required_child(head, "sersync")
    rsync = _rsync(sersync)
    plugins = _plugins(head)
    return Config(
        source=source,
        metrics=_metrics(head),
        debug=start(child(head, "debug")),
        xfs=value(child(head, "fileSystem"), "xfs", convert.boolean, False),
        filter=_filter(head),
        inotify=_inotify(head),
        localpaths=_localpaths(sersync, rsync.port),
        rsync=rsync,
        fail_log=_fail_log(sersync),
        crontab=_crontab(sersync),
        sersync_plugin=_sersync_plugin(sersync, plugins),
        plugins=plugins,
        watcher=value(child(head, "watcher"), "use", convert.choice(*WATCHERS), "auto"),
    )


@guarded
def _metrics(head: Element) -> Metrics:
    element = child(head, "metrics")  # not <host>: sersync only printed it
    if not start(element):
        return Metrics(False, DEFAULT_METRICS_HOSTIP, 0)
    return Metrics(
        start=True,
        hostip=value(element, "hostip", convert.nonempty, DEFAULT_METRICS_HOSTIP),
        port=value(element, "port", convert.port),
    )


@guarded
def _filter(head: Element) -> Filter:
    element = child(head, "filter")
    started = start(element)
    return Filter(
        start=started,
        excludes=_expressions(element, convert.regex) if started else (),
        # Every name by default; keepDotfiles="false" brings sersync's rule back.
        keep_dotfiles=value(element, "keepDotfiles", convert.boolean_default_true, True),
    )


def _expressions(parent: Optional[Element], converter: Callable[[str], str]) -> tuple[str, ...]:
    # sersync reads the expression of the i-th child whatever its tag, so any element counts.
    return tuple(value(one, "expression", converter) for one in elements(parent))


@guarded
def _inotify(head: Element) -> Inotify:
    element = child(head, "inotify")
    flags = {}
    for tag, name, default in _INOTIFY:
        found = child(element, tag)
        flags[name] = default if found is None else start(found)
    delete = child(element, "delete")
    flags["delete_in_full_sync"] = value(delete, "inFullSync", convert.boolean, True)
    return Inotify(**flags)


@guarded
def _localpaths(sersync: Element, port: Optional[int]) -> tuple[LocalPath, ...]:
    # sersync uses only the first <localpath>; we use all of them.
    blocks = children(sersync, "localpath")
    if not blocks:
        raise Invalid(sersync, None, "missing required element <localpath>")
    localpaths, lines = [], {}
    for element in blocks:
        localpath = _localpath(element, port)
        if localpath.watch in lines:
            # One inotify watch per directory: the second block would never get its events.
            problem = f"same directory as the <localpath> at line {lines[localpath.watch]}"
            raise Invalid(element, "watch", problem)
        lines[localpath.watch] = element.sourceline
        localpaths.append(localpath)
    return tuple(localpaths)


def _localpath(element: Element, port: Optional[int]) -> LocalPath:
    watch = value(element, "watch", convert.directory)
    remotes = children(element, "remote")
    if not remotes:
        raise Invalid(element, None, "missing required element <remote>")
    seen: dict[tuple, int] = {}
    parsed = []
    for element in remotes:
        remote = _remote(element, port)
        key = (remote.ip, remote.name, remote.port)
        if key in seen:  # two lanes would push the same changes to one place, racing
            raise Invalid(element, "name", f"same remote as the <remote> at line {seen[key]}")
        seen[key] = element.sourceline
        parsed.append(remote)
    return LocalPath(watch, tuple(parsed))


def _remote(element: Element, port: Optional[int]) -> Remote:
    return Remote(
        ip=value(element, "ip", convert.nonempty),
        name=value(element, "name", convert.nonempty),
        port=value(element, "port", convert.port, port),  # sersyncpy's addition
    )


@guarded
def _rsync(sersync: Element) -> Rsync:
    element = child(sersync, "rsync")
    auth = child(element, "auth")
    started = start(auth)
    ssh = start(child(element, "ssh"))
    return Rsync(
        common_params=value(
            child(element, "commonParams"), "params", convert.argv, DEFAULT_COMMON_PARAMS
        ),
        auth=started,
        users=value(auth, "users", convert.nonempty) if started else "",
        # Over ssh rsync takes no password file (sersync passed it, and every transfer
        # failed): not read, not required; _warnings says so.
        password_file=(value(auth, "passwordfile", convert.password_file, None)
                       if started and not ssh else None),
        port=when_started(child(element, "userDefinedPort"), "port", convert.port),
        timeout=when_started(child(element, "timeout"), "time", convert.seconds_for_rsync),
        ssh=ssh,
        ssh_command=value(child(element, "ssh"), "command", convert.remote_shell, "ssh"),
        latency_budget=value(child(element, "latency"), "budgetMs", convert.non_negative,
                             round(pushpolicy.DEFAULT_BUDGET * 1000)) / 1000,
    )


@guarded
def _fail_log(sersync: Element) -> FailLog:
    element = child(sersync, "failLog")
    if element is None:
        return FailLog(statefiles.default_fail_log(), DEFAULT_TIME_TO_EXECUTE)
    return FailLog(
        path=value(element, "path", convert.fail_log_path, statefiles.default_fail_log()),
        time_to_execute=value(element, "timeToExecute", _time_to_execute, EMPTY_TIME_TO_EXECUTE),
        max_pending=value(element, "maxPending", convert.positive, DEFAULT_MAX_PENDING),
    )


def _time_to_execute(text: str) -> int:
    return EMPTY_TIME_TO_EXECUTE if not text.strip() else convert.non_negative(text)


@guarded
def _crontab(sersync: Element) -> Crontab:
    element = child(sersync, "crontab")
    started = start(element)
    # sersync ignores the schedule while start is false; so do we, bad values included.
    minutes = convert.minutes if started else convert.lenient(convert.minutes, DEFAULT_SCHEDULE)
    crontabfilter = child(element, "crontabfilter")
    return Crontab(
        start=started,
        schedule=value(element, "schedule", minutes, DEFAULT_SCHEDULE),
        excludes=_expressions(crontabfilter, str) if start(crontabfilter) else (),
    )


@guarded
def _plugins(head: Element) -> tuple[PluginSection, ...]:
    return tuple(
        PluginSection(value(element, "name", registry.plugin_name), element,
                      element.sourceline or 0)
        for element in children(head, "plugin")
    )


@guarded
def _sersync_plugin(sersync: Element, plugins: tuple[PluginSection, ...]) -> Optional[str]:
    element = child(sersync, "plugin")
    if not start(element):
        return None
    name = value(element, "name", registry.plugin_name)
    if not any(section.name == name for section in plugins):
        raise Invalid(element, "name", f'no top-level <plugin name="{name}"> section')
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
        return registry.read(name, section.element, standalone)
    except Invalid as exc:
        raise ConfigError(message(cfg.source, exc)) from exc.__cause__
