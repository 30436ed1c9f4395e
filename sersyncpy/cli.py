"""The command line: sersync 2.5's flags (-d -r -n -o -m), -t (check the config), --version,
and `sersyncpy demo`.

It maps every SersyncpyError to one line on stderr and its exit code; no traceback reaches
the user.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Optional

from sersyncpy import __version__, background, convert, logs, statefiles
from sersyncpy.errors import SersyncpyError, UsageError

if TYPE_CHECKING:  # only for the annotations: --version and -h must not import them
    from sersyncpy.config import Config
    from sersyncpy.wiring import Tuning

logger = logging.getLogger("sersyncpy")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit 2 itself; keep one error path
        raise UsageError(f"{message} (see sersyncpy -h)")


def version_line() -> str:
    """The version, the filter queue, and the watcher <watcher use="auto"> would pick (the
    roots' file systems may still rule fanotify out: the log's "watcher:" line says)."""
    from sersyncpy.fanwatch import probe
    from sersyncpy.filterqueue import IMPLEMENTATION

    why_not = probe()
    watcher = "fanotify" if why_not is None else f"inotify (fanotify: {why_not})"
    return f"sersyncpy {__version__} filterqueue={IMPLEMENTATION} watcher={watcher}"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sersyncpy",
        description="Real-time one-way replication of directories to rsync daemons, "
        "configured by sersync 2.5's confxml.xml. `sersyncpy demo` shows it working; "
        "`sersyncpy -t -o FILE` checks a config without running it.",
    )
    p.add_argument("-o", dest="config", default="confxml.xml", metavar="FILE",
                   help="the config file (default: ./confxml.xml)")
    p.add_argument("-t", dest="check", action="store_true",
                   help="check the config and exit, as nginx -t: print what sersyncpy "
                   "understood (roots, remotes, the rsync command lines, filters, plugin, "
                   "file paths) and every warning; starts nothing, contacts no remote; "
                   "exit 0, or 2 with the error (with -m NAME: that plugin's settings)")
    p.add_argument("-r", dest="full_first", action="store_true",
                   help="push every watched tree whole once, after the watches are set")
    p.add_argument("-n", dest="threads", default="10", metavar="N",
                   help="how many rsync processes may run at once (default 10)")
    p.add_argument("-d", dest="daemon", action="store_true",
                   help="run as a daemon (double fork, pid file, log to --log-file); under "
                   "systemd prefer the foreground and Type=notify")
    p.add_argument("--pidfile", metavar="FILE",
                   help=f"with -d: the pid file (default {background.default_pidfile()})")
    p.add_argument("--log-file", metavar="FILE",
                   help="log to this file, reopened on SIGUSR1 (with -d, default "
                   f"{background.default_log_file()}); otherwise to stderr")
    p.add_argument("--status-file", metavar="FILE",
                   help="the JSON status file (default: beside the fail log, *.status.json)")
    p.add_argument("-m", dest="plugin", metavar="NAME",
                   help="run one plugin alone (command, socket, refreshCDN or http), "
                   "without rsync, for changes under the plugin's own localpath")
    p.add_argument("--raise-inotify-limits", action="store_true",
                   help="raise fs.inotify.max_user_watches / max_user_instances when they are "
                   "too low for the watched trees (root only; never done without this flag)")
    p.add_argument("--debug", action="store_true", help="log at DEBUG level")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


def parse_threads(value: str) -> int:
    try:
        return convert.positive(value)
    except convert.NotANumber:
        raise UsageError(f"-n {value!r}: not a whole number") from None
    except ValueError as exc:
        raise UsageError(f"-n {value!r}: {exc}") from None


def parse_plugin(value: Optional[str]) -> Optional[str]:
    from sersyncpy.plugins import registry

    try:
        return None if value is None else registry.plugin_name(value)
    except ValueError as exc:
        raise UsageError(f"-m {value}: {exc}") from None


def _main(argv: list[str]) -> int:
    if argv[:1] == ["demo"]:
        from sersyncpy import demo

        return demo.main(argv[1:], version_line())
    if argv[:1] == ["status"]:
        from sersyncpy import status

        return status.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.version:
        print(version_line())
        return 0
    threads = parse_threads(args.threads)
    from sersyncpy import config, wiring

    parse_plugin(args.plugin)
    cfg = config.load(args.config)
    plugin = args.plugin or cfg.sersync_plugin
    if plugin:  # checked here, so that a mistake is the one line on stderr
        config.plugin_settings(cfg, plugin, standalone=args.plugin is not None)
    tuning = wiring.Tuning.from_environment()
    status_file = os.path.abspath(args.status_file) if args.status_file else None
    if args.check:  # before -d, the log and the lock: -t starts nothing
        from sersyncpy import check

        options = check.Options(plugin=args.plugin, status_file=status_file,
                                full_first=args.full_first, threads=threads)
        sys.stdout.write(check.report(cfg, options))
        return 0
    return _run(args, cfg, threads, tuning, status_file)


def _run(args: argparse.Namespace, cfg: Config, threads: int, tuning: Tuning,
         status_file: Optional[str]) -> int:
    """Replicate (or, with -m, run the plugin alone) until stopped: with -d in the background,
    holding the pid file and telling the starting process how the start went."""
    from sersyncpy import daemon

    # Absolute before -d changes directory to /: SIGHUP reads the config again.
    config_path = os.path.abspath(args.config)
    log_file = args.log_file or (background.default_log_file() if args.daemon else None)
    log_file = os.path.abspath(log_file) if log_file else None
    pidfile = report_fd = None
    start_dir = os.getcwd()
    if args.daemon:
        _check_writable(log_file)
        pidfile = background.PidFile(args.pidfile or background.default_pidfile())
        report_fd = background.detach()
        pidfile.write()
    try:
        logs.setup(args.debug or cfg.debug, log_file, detached=args.daemon)
        logger.info("%s, config %s", version_line(), args.config)
        for line in cfg.warnings:
            logger.warning("%s", line)

        def ready() -> None:
            background.report(report_fd, "ok")

        tuning = replace(tuning, raise_limits=args.raise_inotify_limits)
        if args.plugin is not None:
            return daemon.run_plugin(cfg, args.plugin, tuning=tuning, config_path=config_path,
                                     on_ready=ready)
        return daemon.run(cfg, threads=threads, full_first=args.full_first, tuning=tuning,
                          config_path=config_path, status_path=status_file, on_ready=ready,
                          start_dir=start_dir)
    except SersyncpyError as exc:
        background.report(report_fd, str(exc))  # -d: the starting process prints it
        raise
    finally:
        if pidfile is not None:
            pidfile.remove()


def _check_writable(path: Optional[str]) -> None:
    """-d: a log file that cannot be opened is said before the terminal is gone."""
    if path is not None:
        statefiles.ensure_dir_of(path)
        os.close(statefiles.open_own(path, os.O_WRONLY | os.O_APPEND, logs.LOG_MODE,
                                          "the log file"))


def main(argv: Optional[list[str]] = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except SersyncpyError as exc:
        print(f"sersyncpy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
