"""The command line: sersync 2.5's flags (-d -r -n -o -m), --version, and `sersyncpy demo`.

It maps every SersyncpyError to one line on stderr and its exit code; no traceback reaches
the user.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from sersyncpy import __version__
from sersyncpy.errors import SersyncpyError, UsageError

logger = logging.getLogger("sersyncpy")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit 2 itself; keep one error path
        raise UsageError(f"{message} (see sersyncpy -h)")


def version_line() -> str:
    from sersyncpy.filterqueue import IMPLEMENTATION

    return f"sersyncpy {__version__} filterqueue={IMPLEMENTATION}"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sersyncpy",
        description="Real-time one-way replication of directories to rsync daemons, "
        "configured by sersync 2.5's confxml.xml. `sersyncpy demo` shows it working.",
    )
    p.add_argument("-o", dest="config", default="confxml.xml", metavar="FILE",
                   help="the config file (default: ./confxml.xml)")
    p.add_argument("-r", dest="full_first", action="store_true",
                   help="push every watched tree whole once, after the watches are set")
    p.add_argument("-n", dest="threads", default="10", metavar="N",
                   help="how many rsync processes may run at once (default 10)")
    p.add_argument("-d", dest="daemon", action="store_true",
                   help="run as a daemon (not yet available: run under systemd instead)")
    p.add_argument("-m", dest="plugin", metavar="NAME",
                   help="run one plugin alone (command, socket, refreshCDN or http), "
                   "without rsync, for changes under the plugin's own localpath")
    p.add_argument("--debug", action="store_true", help="log at DEBUG level")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


def parse_threads(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"-n {value!r}: not a whole number") from None
    if n < 1:
        raise UsageError(f"-n {value!r}: must be at least 1")
    return n


def setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format=LOG_FORMAT,
                        stream=sys.stderr)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["demo"]:
        from sersyncpy import demo

        return demo.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.version:
        print(version_line())
        return 0
    threads = parse_threads(args.threads)
    if args.daemon:
        raise UsageError("-d (daemon mode) is not available yet; run sersyncpy in the "
                         "foreground under systemd or a supervisor")
    from sersyncpy import config, daemon

    if args.plugin is not None and args.plugin not in config.PLUGIN_NAMES:
        raise UsageError(f"-m {args.plugin}: unknown plugin, expected one of "
                         f"{', '.join(config.PLUGIN_NAMES)}")

    cfg = config.load(args.config)
    tuning = daemon.Tuning.from_environment()
    setup_logging(args.debug or cfg.debug)
    logger.info("%s, config %s", version_line(), args.config)
    if args.plugin is not None:
        return daemon.run_plugin(cfg, args.plugin, tuning=tuning)
    return daemon.run(cfg, threads=threads, full_first=args.full_first, tuning=tuning)


def main(argv: Optional[list[str]] = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except SersyncpyError as exc:
        print(f"sersyncpy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
