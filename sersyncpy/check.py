"""What sersyncpy understood of a config, as `sersyncpy -t` prints it: plain text built from a
loaded Config and the command line's options. Starts nothing, contacts no remote, writes no
file; loading the config (and refusing a bad one) is config.py's.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from sersyncpy import __version__, faillog, fullsync, plugins, rsync, statusfile
from sersyncpy import config as configmod
from sersyncpy.plugins.command import prefix_warning
from sersyncpy.plugins.settings import CdnSettings, CommandSettings, PluginSettings, SocketSettings
from sersyncpy.wiring import excluded_by, target_for

MASK = "****"
# Shown in place of what only a run has: the temporary file of paths the <filter> regexes
# leave out below a directory sent whole, and a renamed directory's old and new names.
EXCLUDE_FILE = "/tmp/sersyncpy-exclude-XXXXXXXX"
RENAMED_FROM, RENAMED_TO = "OLD", "NEW"
LISTED_PATH = "PATH"  # stands for the paths of a batch in the calls shown

# The options sersyncpy adds to commonParams, in the order they are explained; a key ending
# in "=" matches any value.
_ADDED = (
    ("-r", "with listed paths (which turn off -a's recursion): a listed directory is "
           "sent whole"),
    ("-I", "a listed file is sent whatever the remote has (sersync 2.5: rsync's quick "
           "check skipped a same-size rewrite within the same second)"),
    ("-c", "with -u in commonParams and <delete inFullSync=\"false\"> (a peer that "
           "merges): a listed file is compared by content, so the copy coming back from "
           "the other side is left untouched and the echo ends"),
    ("-R", "the listed paths keep their place below the root"),
    ("-s", "over ssh, names travel inside rsync's protocol, never on the remote shell's "
           "command line"),
    ("-e", "the remote shell, <ssh command> (rsync splits it; no shell runs it)"),
    ("--sockopts=", "no Nagle delay (~85 ms) on each daemon call"),
    ("--contimeout=", f"a remote that does not answer is given up after "
                      f"{rsync.CONNECT_TIMEOUT} s, and tried again (sersync 2.5 set none)"),
    ("--port=", "<remote port>, else <userDefinedPort>"),
    ("--password-file=", "<auth passwordfile>"),
    ("--timeout=", f"<timeout time> when started, else {rsync.DEFAULT_IO_TIMEOUT} s "
                   "(sersync 2.5 set none): a stalled transfer never holds its queue"),
    ("--stats", "files and bytes sent, for the status file and metrics"),
    ("--from0", "the paths come NUL-separated (on stdin, or in --exclude-from's file): any "
                "byte in a name is safe"),
    ("--files-from=", "the paths of the batch, on stdin (only for a path too long to be an "
                      "argument)"),
    ("--delete-missing-args", "a listed path that is gone is deleted on the remote"),
    ("--force", "a directory that is gone is deleted with its content"),
    ("--ignore-missing-args", "a listed path that is gone is skipped"),
    ("--delete", "a full sync, or a directory sent whole, deletes on the remote what the "
                 "source lacks"),
    ("--mkpath", "a renamed directory's parents are made on the remote"),
    ("--modify-window=", "-1: a renamed directory's files are compared in nanoseconds, so "
                         "a same-size rewrite just before the rename is not linked over"),
    ("--link-dest=", "the remote hard-links a renamed directory's unchanged files from its "
                     "old name: nothing is sent again (sersync 2.5 deleted it and sent it "
                     "whole; rsync >= 3.2.3, else it is sent whole)"),
    ("--no-r", "with -d: a directory's own metadata, not its content"),
    ("--exclude=", "<crontabfilter> patterns (full syncs only), and with "
                   "keepDotfiles=\"false\" rsync's temporary files (.NAME.XXXXXX)"),
    ("--exclude-from=", "with <filter> on: what its regexes leave out below a directory "
                        "sent whole (a private temporary file, only when there is any)"),
    ("--", "ends the options: no path is read as one (each is ./PATH, so none reads as "
           "an option or a host: either)"),
)


@dataclass(frozen=True)
class Options:
    """What the command line adds to the config."""

    plugin: Optional[str] = None  # -m NAME: that plugin alone, no rsync
    status_file: Optional[str] = None  # --status-file, absolute
    full_first: bool = False  # -r
    threads: int = 10  # -n


def report(cfg: configmod.Config, options: Options = Options()) -> str:
    """The text `sersyncpy -t` prints: what the run would do, then every warning, then the
    verdict. Raises ConfigError where the run would (a plugin's bad settings)."""
    if options.plugin is not None:
        lines = _standalone(cfg, options.plugin)
    else:
        lines = _replication(cfg, options)
    found = warnings(cfg, options)
    lines += ["", "warnings:"] + ([f"  WARNING: {line}" for line in found] or ["  none"])
    count = f"{len(found)} warning{'' if len(found) == 1 else 's'}"
    lines += ["", f"sersyncpy: {cfg.source}: the config is valid ({count}); nothing was started"]
    return "\n".join(lines) + "\n"


def _head(cfg: configmod.Config) -> list[str]:
    return [f"sersyncpy {__version__} -t: {cfg.source}, as sersyncpy understands it",
            "(a check: nothing is watched, run, locked, written or listened on; no remote is "
            "contacted)", ""]


def _replication(cfg: configmod.Config, options: Options) -> list[str]:
    lines = _head(cfg)
    lines.append(f"mode: replication with rsync, at most {options.threads} rsync processes "
                 "at once (-n)")
    for localpath in cfg.localpaths:
        lines += ["", f"root {localpath.watch}"]
        for remote in localpath.remotes:
            lines += _remote(cfg, remote)
    lines += ["", *_added(cfg)]
    lines += ["", *_events(cfg), "", *_filter(cfg), "", *_full_syncs(cfg, options)]
    lines += ["", *_sync_plugin(cfg), *_sections(cfg)]
    lines += ["", *_state(cfg, options), "", *_metrics(cfg), "", *_password(cfg)]
    return lines


def _standalone(cfg: configmod.Config, name: str) -> list[str]:
    settings = configmod.plugin_settings(cfg, name, standalone=True)
    lines = _head(cfg)
    lines.append(f"mode: -m {name}: the plugin alone, told of each change at once; no rsync "
                 "(as sersync 2.5 -m)")
    for root in plugins.standalone_roots(cfg, settings):
        lines.append(f"root {root}")
    lines += ["", "with -m, the rules below decide which changes the plugin is told of",
              *_events(cfg), "", *_filter(cfg), ""]
    lines += [f"plugin {name} (-m)", *_plugin_settings(settings), *_sections(cfg)]
    lines += ["", "not used with -m: the remotes and rsync, full syncs and <crontab>, the fail "
              "log, its lock and the status file, metrics, the password file"]
    return lines


# --- remotes and rsync --------------------------------------------------------------------


def _argvs(cfg: configmod.Config, t: rsync.Target) -> tuple[tuple[str, list[str]], ...]:
    """The rsync calls of one remote, as a run would make them."""
    exclude_from = EXCLUDE_FILE if excluded_by(cfg) else None
    return (
        ("live batch", as_run(rsync.listed_argv(t, exclude_from))),
        ("full sync", as_run(rsync.full_argv(t, exclude_from), "")),
        ("renamed dir", rsync.rename_argv(t, RENAMED_FROM, RENAMED_TO, exclude_from)),
        ("dir metadata", as_run(rsync.dirs_argv(t))),
    )


def as_run(argv: list[str], path: str = LISTED_PATH) -> list[str]:
    """A call of rsync.*_argv as a run makes it, for one path (rsync.invocations)."""
    return rsync.invocations(argv, [path])[0][0]


def _remote(cfg: configmod.Config, remote: configmod.Remote) -> list[str]:
    t = target_for(cfg, remote)
    if t.ssh:
        where = f"remote directory {t.module}"
        port = (f"port {t.port} not used (see the warnings)" if t.port
                else "ssh's port (<ssh command>, ~/.ssh/config, else 22)")
        user = (f"login {t.user} (<auth users>)" if t.user
                else "ssh's login (the local user, or ~/.ssh/config)")
    else:
        where = f"module {t.module}"
        port = f"port {t.port}" if t.port else "port 873 (rsync's default)"
        user = f"user {t.user} (<auth users>)" if t.user else "no user (<auth> off)"
    budget = (f"changes gather for at most {round(t.budget * 1000)} ms while they keep "
              "coming (<latency budgetMs>); the first after a quiet spell goes at once"
              if t.budget > 0 else "every change is pushed at once (<latency budgetMs=\"0\">)")
    return [f"  remote {t.label} (as the log names it)",
            f"    host {t.ip}, {port}, {where}, {user}",
            f"    {budget}",
            *(f"    {what + ':':13} {shlex.join(argv)}" for what, argv in _argvs(cfg, t))]


def _added(cfg: configmod.Config) -> list[str]:
    """What each option sersyncpy adds to commonParams is for: those the argvs above carry."""
    added = {arg for localpath in cfg.localpaths for remote in localpath.remotes
             for _, argv in _argvs(cfg, target_for(cfg, remote))
             for arg in argv[1:] if arg not in cfg.rsync.common_params}
    placeholders = f"{RENAMED_FROM} and {RENAMED_TO} stand for a renamed directory's names"
    if excluded_by(cfg):
        placeholders += f", {EXCLUDE_FILE} for a temporary file"
    lines = ["rsync runs each argv above as it is, in the root directory, and no shell runs "
             "(the quoting is for reading); the paths go as ./PATH arguments (NUL-separated "
             f"on its stdin if one is too long for an argument); {placeholders}, PATH for "
             "the paths of a batch", "options sersyncpy adds to <commonParams>:"]
    for key, meaning in _ADDED:
        found = {arg for arg in added
                 if arg == key or (key.endswith("=") and arg.startswith(key))}
        if found:  # one value is shown with it (--timeout=60); several are not
            shown = found.pop() if len(found) == 1 else key.rstrip("=")
            lines.append(f"  {shown}: {meaning}")
    return lines


# --- what is pushed -----------------------------------------------------------------------

# (element under <inotify>, field of config.Inotify)
_KINDS = (
    ("delete", "delete"), ("createFolder", "create_folder"), ("createFile", "create_file"),
    ("closeWrite", "close_write"), ("moveFrom", "move_from"), ("moveTo", "move_to"),
    ("attrib", "attrib"), ("modify", "modify"),
)


def _events(cfg: configmod.Config) -> list[str]:
    i = cfg.inotify
    on = [tag for tag, name in _KINDS if getattr(i, name)]
    off = [tag for tag, name in _KINDS if not getattr(i, name)]
    lines = ["events (<inotify>):", f"  watched and pushed: {', '.join(on) or 'none'}",
             f"  off: {', '.join(off) or 'none'}"]
    if not i.create_folder:
        lines.append("  createFolder off: new directories are still watched and sent whole, "
                     "or what is written into them would be missed (sersync 2.5: never "
                     "watched)")
    if not i.create_file:
        lines.append("  createFile off: a new file is pushed by its closeWrite, or at its "
                     "creation when none will come (a symlink, a hard link, a special file: "
                     "sersync 2.5 never pushed those live)")
    if i.attrib:
        lines.append("  attrib: pushed as a metadata update (sersync 2.5: as a delete, and the "
                     "subtree's watches were dropped)")
    if not i.delete:
        lines.append("  delete off: nothing is ever deleted on the remotes")
    elif i.delete_in_full_sync:
        lines.append("  delete: deletions are pushed, and full syncs and directories sent "
                     "whole delete on the remote what the source lacks (--delete)")
    else:
        lines.append("  delete inFullSync=\"false\": deletions seen live are pushed; full "
                     "syncs and directories sent whole delete nothing (trees merge)")
    if i.move_from and i.move_to:
        lines.append("  moveFrom and moveTo: a directory renamed inside a root is sent against "
                     "its old name (--link-dest), not again whole (sersync 2.5: deleted and "
                     "sent whole)")
    lines.append(f"  watcher (<watcher use=\"{cfg.watcher}\">): " + {
        "auto": "fanotify where it can run (root, Linux 5.9, local file systems), on file "
                "systems other users do not write to (not /tmp's, /home's), when no plugin is "
                "on; else inotify; the start-up log says which",
        "inotify": "inotify, a watch per directory (sersync 2.5's)",
        "fanotify": "fanotify, a mark per file system; sersyncpy stops if it cannot run",
    }[cfg.watcher])
    return lines


def _filter(cfg: configmod.Config) -> list[str]:
    f = cfg.filter
    if not f.start:
        lines = ["filter (<filter>): off: no path is left out"]
    elif not f.excludes:
        lines = ["filter (<filter>): on, with no expression: no path is left out"]
    else:
        lines = ["filter (<filter>): on: a path is never pushed when one of these regular "
                 "expressions matches its subject in full (NAME in a root, /DIR/NAME deeper, "
                 "DIR/ for a directory); this holds for every push: live changes, each path "
                 "inside a directory sent whole, and full syncs (sersync 2.5: live events "
                 "only, and it refused -r)",
                 *(f"  {expression}" for expression in f.excludes)]
    if f.keep_dotfiles:
        lines.append("dotfiles: every name is pushed live (keepDotfiles=\"true\", the "
                     "default; sersync 2.5 never pushed a dotfile live: .htaccess, "
                     ".well-known/...)")
    else:
        lines.append("dotfiles: keepDotfiles=\"false\", sersync 2.5's rule: a file named .NAME, "
                     "NAME~ or 4913 is not pushed live (full syncs carry it); rsync's temporary "
                     f"files ({rsync.RSYNC_TEMP_PATTERN}) are kept out of recursive pushes")
    return lines


def _full_syncs(cfg: configmod.Config, options: Options) -> list[str]:
    if options.full_first:
        start = ("  at start (-r): first, through each remote's queue, before any live "
                 "change")
    else:
        start = ("  at every start: beside the live pushes, so that what changed while "
                 "sersyncpy was not running reaches the remotes (sersync 2.5: only with -r)")
    minutes = fullsync.crontab_minutes(cfg)
    if minutes is not None:
        crontab = f"  <crontab>: every {minutes} minutes"
    else:
        crontab = "  <crontab>: off (start=\"false\")"
    patterns = cfg.crontab.excludes
    crontabfilter = ("  <crontabfilter>: " + (" ".join(map(shlex.quote, patterns))
                     + ": rsync patterns for full syncs only, never live" if patterns
                     else "off"))
    return ["full syncs (each root whole, rsync's quick check):", start, crontab,
            "  SIGUSR2: one at once", crontabfilter]


# --- plugins ------------------------------------------------------------------------------


def _sync_plugin(cfg: configmod.Config) -> list[str]:
    name = cfg.sersync_plugin
    if name is None:
        return ["plugin (<sersync><plugin>): none"]
    settings = configmod.plugin_settings(cfg, name, standalone=False)
    lines = [f"plugin (<sersync><plugin>): {name}, told of each change once it is on every "
             "remote of its root", *_plugin_settings(settings)]
    watch = getattr(settings, "watch", None)
    if watch:
        lines.append(f"  its <localpath watch> {watch} serves -m only: the roots above are "
                     "watched (sersync 2.5 watched it instead)")
    return lines


def _plugin_settings(settings: PluginSettings) -> list[str]:
    if isinstance(settings, CommandSettings):
        lines = _command(settings)
    elif isinstance(settings, SocketSettings):
        how = ("one connection per change, carrying its path" if settings.format == "sersync"
               else "one connection, one JSON line per change")
        lines = [f"  sends to {settings.ip}:{settings.port}, format {settings.format}: {how}"]
    elif isinstance(settings, CdnSettings):
        url = (f"the first group of {settings.match} in the path" if settings.regex
               else f"the path below {settings.watch}")
        lines = [f"  asks {settings.domain}:{settings.port} (user {settings.username}, "
                 f"password {MASK}) with {settings.method} to refresh {settings.base} + {url}"]
    else:
        how = ("one form POST per change" if settings.format == "form"
               else "one JSON POST per batch")
        lines = [f"  posts to {masked_url(settings.url)}, format {settings.format}: {how}"]
    d = settings.delivery
    retried = ("" if isinstance(settings, CommandSettings)
               else f"; each retried for {d.retry_seconds:g} s")
    return lines + [f"  queue: {d.queue} changes at most{retried}"]


def _command(settings: CommandSettings) -> list[str]:
    argv = shlex.join([*settings.prefix, "PATH", *settings.suffix])
    errors = ("logged at DEBUG only (ignoreError=\"true\")" if settings.ignore_error
              else "logged as an ERROR, with its stderr")
    paths = ("every changed path" if not settings.includes
             else "those one of these regular expressions matches in full: "
             + ", ".join(settings.includes))
    return [f"  runs: {argv} (PATH: the changed path, one argument; sersyncpy runs this argv "
            "itself, through no shell)",
            f"  a failure is {errors}, and not retried; each run may take "
            f"{settings.timeout:g} s",
            f"  paths: {paths}"]


def _sections(cfg: configmod.Config) -> list[str]:
    seen: set[str] = set()
    names = []
    for section in cfg.plugins:
        shadowed = " not used: an earlier one has this name" if section.name in seen else ""
        names.append(f"{section.name} (line {section.line}{shadowed})")
        seen.add(section.name)
    return [f"<plugin> sections, for -m NAME (each checked only when in use): "
            f"{', '.join(names) or 'none'}"]


def masked_url(url: str) -> str:
    """`url` without its secrets: the user and password, query values, the fragment."""
    parts = urlsplit(url)
    netloc = f"{MASK}@{parts.netloc.rpartition('@')[2]}" if "@" in parts.netloc else parts.netloc
    query = "&".join(f"{name}={MASK}" if eq else MASK
                     for name, eq, _ in (piece.partition("=")
                                         for piece in parts.query.split("&")))
    return urlunsplit(parts._replace(netloc=netloc, query=query if parts.query else "",
                                     fragment=MASK if parts.fragment else ""))


# --- files, metrics, password ---------------------------------------------------------------


def _state(cfg: configmod.Config, options: Options) -> list[str]:
    log = cfg.fail_log
    retry = (f"every failed push is tried again at least every {log.time_to_execute} minutes"
             if log.time_to_execute else "no periodic retry beyond each remote's own")
    status_file = options.status_file or statusfile.default_path(log.path)
    where = "--status-file" if options.status_file else "beside the fail log"
    return [f"fail log: {log.path} (the paths not yet on a remote, replayed at the next start)",
            f"  timeToExecute {log.time_to_execute}: {retry}",
            f"  maxPending {log.max_pending}: pending paths per remote beyond which they "
            "become one full sync of the root",
            f"lock: {faillog.lock_path(log.path)} (held while running: a second sersyncpy on "
            "this fail log is refused)",
            f"status file: {status_file} ({where}; read by `sersyncpy status`)"]


def _metrics(cfg: configmod.Config) -> list[str]:
    m = cfg.metrics
    host = f"[{m.hostip}]" if ":" in m.hostip else m.hostip
    served = (f"metrics: served at http://{host}:{m.port}/metrics" if m.start
              else "metrics: off (<metrics start=\"true\" port=\"...\"> serves them)")
    return [served, "<host hostip port>: never served (sersync 2.5 only printed it)"]


def _password(cfg: configmod.Config) -> list[str]:
    r = cfg.rsync
    if not r.auth:
        return ["password file: none (<auth> off)"]
    if r.ssh:
        return ["password file: not used over ssh (see the warnings)"]
    if r.password_file is None:
        return ["password file: none (<auth passwordfile> is empty: no --password-file)"]
    return [f"password file: {r.password_file} (readable by its owner only; its content is "
            "never shown)"]


# --- warnings -----------------------------------------------------------------------------


def warnings(cfg: configmod.Config, options: Options = Options()) -> list[str]:
    """What the run would warn about at start, and what else -t finds worth saying."""
    found = list(cfg.warnings)
    name = options.plugin
    if name is None:
        shared = faillog.shared_warning(cfg.fail_log.path)
        if shared:
            found.append(shared)
        name = cfg.sersync_plugin
    if name == "command":
        settings = configmod.plugin_settings(cfg, name, standalone=options.plugin is not None)
        assert isinstance(settings, CommandSettings)
        hazard = prefix_warning(settings.prefix)
        if hazard:
            found.append(hazard)
    return found
