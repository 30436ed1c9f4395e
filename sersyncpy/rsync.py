"""rsync command lines (pure functions) and running one rsync: argv lists only, never a shell.

File lists go to rsync NUL-separated on stdin (--from0 --files-from=-), so a file name may
hold any byte. sersync built one `cd W && rsync ...` shell string per event; we keep its
options (commonParams, auth, port, timeout, ssh) and its destinations, not its shell.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

logger = logging.getLogger(__name__)

# A partitioned remote must not hold its lane forever: rsync waits this long for a daemon
# connection, and, when <timeout> is off, this long without I/O (sersync set neither).
CONNECT_TIMEOUT = 10
DEFAULT_IO_TIMEOUT = 60

# Exit codes, from rsync(1). 24 means files vanished on our side between the event and the
# push: their deletion is another pending change, so the batch itself did reach the remote.
OK_CODES = frozenset({0, 24})
# Codes that say the command or the configuration is wrong; retrying will not help until a
# person acts, but we still retry (slowly) rather than drop anything.
FATAL_CODES = frozenset({1, 2, 4})
EXIT_MEANINGS = {
    0: "success",
    1: "syntax or usage error",
    2: "protocol incompatibility",
    3: "errors selecting input/output files, dirs",
    4: "requested action not supported",
    5: "error starting client-server protocol (wrong module, user or password?)",
    6: "daemon unable to append to log-file",
    10: "error in socket I/O",
    11: "error in file I/O",
    12: "error in rsync protocol data stream",
    13: "errors with program diagnostics",
    14: "error in IPC code",
    20: "received SIGUSR1 or SIGINT",
    21: "some error returned by waitpid()",
    22: "error allocating core memory buffers",
    23: "partial transfer due to error",
    24: "partial transfer due to vanished source files",
    25: "the --max-delete limit stopped deletions",
    30: "timeout in data send/receive",
    35: "timeout waiting for daemon connection",
    127: "rsync not found",
}


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code}"
    return EXIT_MEANINGS.get(code, "unknown error")


def classify(code: int) -> str:
    """'ok', 'fatal' (a person must fix something) or 'retry'."""
    if code in OK_CODES:
        return "ok"
    if code in FATAL_CODES:
        return "fatal"
    return "retry"


@dataclass(frozen=True)
class Target:
    """One remote as rsync sees it: where to send and the options every call to it carries."""

    ip: str
    module: str  # daemon module, or the remote directory in ssh mode
    port: Optional[int] = None
    user: str = ""
    password_file: Optional[str] = None
    timeout: Optional[int] = None
    ssh: bool = False
    common_params: tuple[str, ...] = ("-artuz",)
    deletes: bool = True  # <inotify><delete start>: propagate deletions
    # rsync patterns (<crontabfilter>): `excludes` for live pushes, set only when <filter> is on
    # (so what the regexes keep out of events stays out of recursive pushes too), and
    # `full_excludes` for -r, <crontab> and overflow resyncs, as in sersync.
    excludes: tuple[str, ...] = ()
    full_excludes: tuple[str, ...] = ()
    rsync_bin: str = "rsync"

    @property
    def label(self) -> str:
        port = f":{self.port}" if self.port else ""
        sep = ":" if self.ssh else "::"
        return f"{self.ip}{port}{sep}{self.module}"

    def destination(self, rel: str = "") -> str:
        """The destination argument for `rel` (a directory relative to the module, "" = top)."""
        user = f"{self.user}@" if self.user else ""
        sep = ":" if self.ssh else "::"
        path = f"{self.module.rstrip('/')}/{rel}/" if rel else f"{self.module.rstrip('/')}/"
        return f"{user}{self.ip}{sep}{path}"


def base_argv(t: Target) -> list[str]:
    """rsync, commonParams, then the connection options sersync adds (port, auth, timeout, ssh)."""
    argv = [t.rsync_bin, *t.common_params]
    if t.ssh:
        argv += ["-e", "ssh"]
    else:
        # Nagle against delayed ACKs costs ~85 ms per daemon call (see DESIGN.md).
        argv += ["--sockopts=TCP_NODELAY", f"--contimeout={CONNECT_TIMEOUT}"]
        if t.port:
            argv.append(f"--port={t.port}")
        if t.password_file:
            argv.append(f"--password-file={t.password_file}")
    argv.append(f"--timeout={t.timeout or DEFAULT_IO_TIMEOUT}")
    return argv


def _delete_options(t: Target, recursive: bool) -> list[str]:
    if not t.deletes:
        return ["--ignore-missing-args"]
    return ["--delete-missing-args", "--force"] + (["--delete"] if recursive else [])


def _exclude_options(patterns: tuple[str, ...]) -> list[str]:
    return [f"--exclude={pattern}" for pattern in patterns]


def listed_argv(t: Target) -> list[str]:
    """One call for the listed paths: files and symlinks as they are, missing paths deleted,
    listed directories sent whole (SUBTREE). `-I` because we know these changed, and rsync's
    quick check (size + whole-second mtime) would skip a same-size rewrite."""
    return [
        *base_argv(t), "-r", "-I", "--from0", "--files-from=-",
        *_delete_options(t, recursive=True), *_exclude_options(t.excludes),
        "--", ".", t.destination(),
    ]


def dirs_argv(t: Target) -> list[str]:
    """One call for directories whose own metadata changed: no recursion into them."""
    return [
        *base_argv(t), "--no-r", "-d", "--from0", "--files-from=-", "--ignore-missing-args",
        "--", ".", t.destination(),
    ]


def link_dest_for(src: str, dst: str) -> str:
    """--link-dest for sending `dst` against `src`: relative to the destination directory."""
    depth = dst.count("/") + 1
    return "../" * depth + src


def rename_argv(t: Target, src: str, dst: str) -> list[str]:
    """Send directory `dst` letting the receiver hard-link unchanged files from `src`."""
    return [
        *base_argv(t), "-r", "--delete", "--mkpath", f"--link-dest={link_dest_for(src, dst)}",
        *_exclude_options(t.excludes), "--", f"./{dst}/", t.destination(dst),
    ]


def full_argv(t: Target, rel: str = "") -> list[str]:
    """A recursive push of a directory (the root by default), trusting rsync's quick check."""
    source = f"./{rel}/" if rel else "./"
    return [
        *base_argv(t), "-r", *(["--delete"] if t.deletes else []), "--mkpath",
        *_exclude_options(t.full_excludes), "--", source, t.destination(rel),
    ]


def encode_list(paths: Iterable[str]) -> bytes:
    """NUL-separated bytes for --from0; "" (the root) becomes "."."""
    return b"".join(os.fsencode(p or ".") + b"\0" for p in paths)


@dataclass(frozen=True)
class Result:
    code: int
    seconds: float
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code in OK_CODES


def run(
    argv: Sequence[str], cwd: str, stdin: bytes = b"", timeout: Optional[float] = None,
) -> Result:
    """Run one rsync in `cwd`; never raises for rsync's own failures."""
    logger.debug("rsync in %s: %s", cwd, argv)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        return Result(127, time.monotonic() - start, str(exc))
    except OSError as exc:  # cwd vanished, too many processes...
        return Result(11, time.monotonic() - start, str(exc))
    try:
        _, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return Result(30, time.monotonic() - start, f"killed after {timeout}s")
    text = err.decode("utf-8", "replace").strip()
    return Result(proc.returncode, time.monotonic() - start, text[-2000:])
