"""The command plugin: runs prefix, the changed path, suffix as one argv per change, never
through a shell (sersync's system() call ran `a;touch X;b.php` as three commands). Says at
start when the prefix is an interpreter that would run each changed file as its script.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from typing import Optional

from sersyncpy.convert import pattern
from sersyncpy.plugins import Notice
from sersyncpy.plugins.interpreter import interpreter_hazard
from sersyncpy.plugins.settings import CommandSettings

logger = logging.getLogger(__name__)

OUTPUT_KEPT = 4096  # bytes of a failed command's stderr shown in the log


def command_argv(settings: CommandSettings, path: str) -> list[bytes]:
    """prefix (as shlex split it), the absolute path as one argument, then suffix."""
    return [*map(os.fsencode, settings.prefix), os.fsencode(path),
            *map(os.fsencode, settings.suffix)]


def prefix_warning(prefix: tuple[str, ...]) -> Optional[str]:
    """What to say at start when `prefix` is an interpreter that runs each changed file (or
    its name) as code: sersync 2.5's sample had prefix="/bin/sh", which ran every uploaded
    file as root."""
    hazard = interpreter_hazard(prefix)
    if hazard is None:
        return None
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    return (f"command: prefix={shlex.join(prefix)} {hazard}: whoever can write in the watched "
            f"tree runs code as {who}; name the script after the interpreter in the prefix, or "
            "pass the code inline (sh -c '...' sh)")


class CommandPlugin:
    name = "command"
    notices_inside = True

    def __init__(self, settings: CommandSettings):
        self.settings = settings
        self._includes = [pattern(expression) for expression in settings.includes]
        warning = prefix_warning(settings.prefix)
        if warning:
            logger.warning("%s", warning)

    def wanted(self, path: str) -> bool:
        """<filter start="true">: only paths an include expression matches in full."""
        return not self._includes or any(rx.fullmatch(path) for rx in self._includes)

    def deliver(self, notices: list[Notice]) -> None:
        # A failing command is not retried (it already ran): its failure is logged, as an
        # error unless ignoreError="true".
        for notice in notices:
            if self.wanted(notice.path):
                self._run(notice)

    def _run(self, notice: Notice) -> None:
        argv = command_argv(self.settings, notice.path)
        env = dict(os.environ, SERSYNCPY_EVENT=notice.kind,
                   SERSYNCPY_ISDIR="1" if notice.is_dir else "0")
        shown = " ".join(map(repr, map(os.fsdecode, argv)))
        logger.debug("command: %s", shown)
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=env,
                                  timeout=self.settings.timeout, check=False)
        except subprocess.TimeoutExpired:
            self._failed(shown, f"killed after {self.settings.timeout:g} s", b"")
            return
        except OSError as exc:
            logger.error("command: cannot run %s: %s", shown, exc.strerror or exc)
            return
        if done.returncode != 0:
            self._failed(shown, f"exit {done.returncode}", done.stderr)

    def _failed(self, shown: str, what: str, stderr: bytes) -> None:
        level = logging.DEBUG if self.settings.ignore_error else logging.ERROR
        text = stderr[-OUTPUT_KEPT:].decode("utf-8", "replace").strip()
        logger.log(level, "command: %s: %s%s", shown, what,
                   "".join(f"\n    {line}" for line in text.splitlines()[-10:]))

    def close(self) -> None:
        pass
