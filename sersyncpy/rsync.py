"""rsync command lines (pure functions): argv lists only, never a shell. Running them is
rsyncrun.py's; which paths a partial transfer (exit 23) left behind is rsync_failures.py's.
"""

from __future__ import annotations

import enum
import logging
import os
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from sersyncpy import pushpolicy
from sersyncpy.events import is_clean

logger = logging.getLogger(__name__)

# The builders below list paths NUL-separated on stdin (--from0 --files-from=-), which any
# name fits; `invocations` turns such a call into the same call with the paths as arguments
# (each ./-prefixed, -R as --files-from implied), in chunks under ARG_MAX: rsync reads
# --files-from one byte per read() + poll(), and 10,000 paths cost 304 ms of its CPU that
# way, 129 ms as arguments. sersync built one `cd W && rsync ...` shell string per event; we
# keep its options (commonParams, auth, port, timeout, ssh) and destinations, not its shell.

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
    255: "the remote shell failed (ssh could not connect or log in)",
}


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code}"
    return EXIT_MEANINGS.get(code, "unknown error")


class Outcome(enum.Enum):
    """What an exit code says of the call (classify)."""

    OK = "ok"  # the batch reached the remote
    FATAL = "fatal"  # a person must fix something (retried slowly all the same)
    RETRY = "retry"


def classify(code: int) -> Outcome:
    if code in OK_CODES:
        return Outcome.OK
    if code in FATAL_CODES:
        return Outcome.FATAL
    return Outcome.RETRY


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
    rsh: str = "ssh"  # <ssh command>: the remote shell rsync runs in ssh mode (it splits it)
    common_params: tuple[str, ...] = ("-artuz",)
    deletes: bool = True  # <inotify><delete start>: propagate deletions
    # <delete inFullSync>: recursive pushes (full syncs, directories sent whole) delete what
    # the source lacks; off for peers that merge (two-way, hub and spoke).
    full_deletes: bool = True
    skip_rsync_temp: bool = False  # on with <filter keepDotfiles="false"> (_peer_excludes)
    # rsync patterns (<crontabfilter>) for full syncs only (-r, <crontab>, the start-up
    # resync, overflow), as in sersync. Live pushes apply the <filter> regexes alone
    # (rules.py), whatever rsync sends whole.
    full_excludes: tuple[str, ...] = ()
    rsync_bin: str = "rsync"
    # Not rsync's: how long a change may wait to be gathered with others (<latency
    # budgetMs>, in seconds), read by the lane's push policy. Here so that a reload that
    # changes it reaches the lane as any other option of the remote does.
    budget: float = pushpolicy.DEFAULT_BUDGET

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
        # -s (--protect-args, rsync >= 3.0): names and options travel inside rsync's protocol,
        # not on the command line that ssh hands to the remote user's shell, which rsync up
        # to 3.2.3 (and any rsync with RSYNC_OLD_ARGS=1) leaves unescaped.
        argv += ["-s", "-e", t.rsh]
    else:
        # Nagle against delayed ACKs costs ~85 ms per daemon call (see DESIGN.md).
        argv += ["--sockopts=TCP_NODELAY", f"--contimeout={CONNECT_TIMEOUT}"]
        if t.port:
            argv.append(f"--port={t.port}")
        if t.password_file:
            argv.append(f"--password-file={t.password_file}")
    argv.append(f"--timeout={t.timeout or DEFAULT_IO_TIMEOUT}")
    argv.append("--stats")  # files and bytes sent, for the status file and metrics
    return argv


def _delete_options(t: Target, recursive: bool) -> list[str]:
    if not t.deletes:
        return ["--ignore-missing-args"]
    return ["--delete-missing-args", "--force"] + (["--delete"] if recursive else [])


def _exclude_options(patterns: tuple[str, ...], exclude_from: Optional[str] = None) -> list[str]:
    """`patterns` (rsync's syntax), then the file of exact paths the <filter> regexes leave
    out of what is sent whole (rules.py; NUL-separated, as --from0 reads it)."""
    return ([f"--exclude={pattern}" for pattern in patterns]
            + (["--from0", f"--exclude-from={exclude_from}"] if exclude_from else []))


def update_only(t: Target) -> bool:
    """commonParams has -u (--update): never overwrite a newer file on the receiver."""
    for param in t.common_params:
        if param == "--update" or (param.startswith("-") and not param.startswith("--")
                                   and "u" in param[1:]):
            return True
    return False


def changed_option(t: Target) -> str:
    """How listed paths escape rsync's quick check (size + whole-second mtime), which would
    skip a same-size rewrite: `-I` sends them whatever the receiver has. A peer that merges
    (-u with <delete inFullSync="false">: two-way pairs, hubs) gets `-c` instead: content is
    compared, a file the receiver already has is left untouched, and the copy that comes
    back from the other side writes nothing and raises no event, which ends the echo. A
    one-way replica has no echo to end, so it never pays -c's second read of every changed
    file (a 256 MiB file read twice on each side)."""
    return "-c" if update_only(t) and not t.full_deletes else "-I"


# rsync's receiver writes each file as ".NAME.XXXXXX" before renaming it into place. Where the
# watched tree is itself an rsync destination (a relay, a two-way pair, a hub), a directory
# pushed whole while a transfer into it runs carries the half-written file. When dotfiles are
# replicated (the default) the rename's own event deletes that copy; under sersync's rule
# (keepDotfiles="false") nothing would: keep such names out then.
RSYNC_TEMP_PATTERN = ".*.??????"


def _peer_excludes(t: Target) -> list[str]:
    # An exclude, not a sender-side hide: a file of that shape on the receiver (a dotfile
    # of the user's, .name.backup) stays protected from --delete. The price: a temporary
    # file that a killed rsync left on a receiver is not cleaned up by later pushes either.
    return [f"--exclude={RSYNC_TEMP_PATTERN}"] if t.skip_rsync_temp else []


def is_temp_name(name: str) -> bool:
    """Whether a file name has the shape of an rsync receiver's temporary file, ".f.XXXXXX"
    (receiver.c, get_tmpname): where the watched tree is itself an rsync destination."""
    return (len(name) >= 9 and name.startswith(".") and name[-7] == "."
            and name[-6:].isascii() and name[-6:].isalnum())


def listed_argv(t: Target, exclude_from: Optional[str] = None) -> list[str]:
    """One call for the listed paths: files and symlinks as they are, missing paths deleted,
    listed directories sent whole (SUBTREE), past the quick check (changed_option)."""
    return [
        *base_argv(t), "-r", changed_option(t), "--from0", "--files-from=-",
        # With inFullSync="false" (peers that merge) nothing is deleted inside a directory
        # sent whole: a two-way peer pushing back a directory it is still receiving would
        # delete what has not reached it yet. Listed deletions still go.
        *_delete_options(t, recursive=t.full_deletes), *_peer_excludes(t),
        *_exclude_options((), exclude_from),
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


def rename_argv(t: Target, src: str, dst: str, exclude_from: Optional[str] = None) -> list[str]:
    """Send directory `dst` letting the receiver hard-link unchanged files from `src`; only
    for names `renamable` allows."""
    if not (src and dst and is_clean(src) and is_clean(dst) and renamable(t, src, dst)):
        raise ValueError(f"refusing to send {dst!r} against {src!r}: not a renamable name")
    delete = ["--delete"] if t.full_deletes else []  # as listed_argv
    # A file rewritten at the same size in the same second, then its directory renamed:
    # its pending update went with the old name, and the whole-second quick check would
    # hard-link the old copy. In nanoseconds (a receiver >= 3.1.3) the rewrite shows.
    return [
        *base_argv(t), "-r", *delete, "--mkpath", "--modify-window=-1",
        f"--link-dest={link_dest_for(src, dst)}",
        *_peer_excludes(t), *_exclude_options((), exclude_from), "--", f"./{dst}/",
        t.destination(dst),
    ]


def cleanup_argv(t: Target, rules_file: str) -> list[str]:
    """Push the listed directories again, recursively with --delete, under the filter rules
    of `rules_file` (rules.cleanup_file): what they hide is deleted on the remote."""
    return [
        *base_argv(t), "-r", "--from0", "--files-from=-", "--delete", "--force",
        f"--filter=merge {rules_file}", "--", ".", t.destination(),
    ]


def full_argv(t: Target, exclude_from: Optional[str] = None) -> list[str]:
    """A recursive push of the listed directories (the root as "."), trusting rsync's quick
    check: overflow, -r, the unwatched. Names go on stdin, never into an argument, where the
    daemon would expand wildcards in them."""
    deletes = (_delete_options(t, recursive=True) if t.full_deletes
               else ["--ignore-missing-args"])
    return [
        *base_argv(t), "-r", "--from0", "--files-from=-", *deletes, *_peer_excludes(t),
        *_exclude_options(t.full_excludes, exclude_from), "--", ".", t.destination(),
    ]


GLOB_CHARS = frozenset("*?[")
# Bytes that no shell, no wildcard expansion and no option parser gives a meaning to.
CONSERVATIVE_CHARS = frozenset(string.ascii_letters + string.digits + "._+,@%=-")


def safe_in_destination(rel: str) -> bool:
    """Whether `rel` can go into a destination argument: the daemon expands wildcards there
    (and keeps backslashes when nothing matches), so a name with them could land elsewhere."""
    return not GLOB_CHARS.intersection(rel)


def conservative(rel: str) -> bool:
    """Whether every component of `rel` is made of CONSERVATIVE_CHARS only (and is no "."
    or ".."): a name that means the same to any remote shell, quoted or not."""
    return bool(rel) and all(
        part not in ("", ".", "..") and CONSERVATIVE_CHARS.issuperset(part)
        for part in rel.split("/"))


def renamable(t: Target, src: str, dst: str) -> bool:
    """Whether a directory renamed from `src` to `dst` may be sent with rename_argv, which puts
    `dst` into the destination argument and `src` into --link-dest. Over ssh both would reach
    the remote shell's command line if -s were not honoured (an old rsync on either side,
    RSYNC_OLD_ARGS): conservative names only, else the directory is sent whole. A daemon
    runs no shell but expands wildcards in the destination."""
    if t.ssh:
        return conservative(src) and conservative(dst)
    return safe_in_destination(dst)


def encode_list(paths: Iterable[str]) -> bytes:
    """NUL-separated bytes for --from0, each path as ./path ("" the root, is "."): rsync takes
    a listed line starting with # or ; for a comment, even with --from0, and skips it.
    A path that is not clean (events.is_clean: "..", absolute, a NUL) never gets here: the
    lane drops it, so this refusal is the last line of defence, not the check."""
    out = []
    for p in paths:
        if not is_clean(p):
            raise ValueError(f"refusing to list {p!r} for rsync: not a clean relative path")
        out.append(b"./" + os.fsencode(p) + b"\0" if p else b".\0")
    return b"".join(out)


# Bytes of arguments per rsync call: well under Linux's ARG_MAX (a quarter of the stack
# limit, 2 MiB by default), which the environment shares; and no single argument may pass
# MAX_ARG_STRLEN (128 KiB). A call whose paths do not fit in one goes as several.
ARGUMENT_BYTES = 512 * 1024
LONGEST_ARGUMENT = 64 * 1024


def invocations(argv: Sequence[str], paths: Sequence[str],
                limit: int = ARGUMENT_BYTES) -> list[tuple[list[str], bytes]]:
    """(argv, stdin) of each rsync to run for a --files-from=- call of rsync.*_argv over
    `paths`: the paths as ./-prefixed arguments (no name can read as an option or a host:
    spec), as many calls as `limit` bytes of them need; or the call itself with the list on
    stdin when a path could not be an argument."""
    if "--files-from=-" not in argv or not paths:
        return [(list(argv), encode_list(paths))]
    arguments = [b"./" + os.fsencode(p) if p else b"." for p in paths]
    if any(len(a) > LONGEST_ARGUMENT for a in arguments):
        return [(list(argv), encode_list(paths))]
    for path in paths:  # encode_list's refusal, without building its bytes
        if not is_clean(path):
            raise ValueError(f"refusing to list {path!r} for rsync: not a clean relative path")
    *options, sep, source, destination = argv
    if (sep, source) != ("--", "."):
        raise ValueError(f"not a --files-from call ending in -- . DEST: {argv!r}")
    # --from0 stays for the files rsync still reads (--exclude-from, a merged filter).
    reads = any(o.startswith(("--exclude-from=", "--filter=merge ")) for o in options)
    options = [o for o in options
               if o != "--files-from=-" and (o != "--from0" or reads)] + ["-R"]
    calls, chunk, size = [], [], 0
    for argument in arguments:
        if chunk and size + len(argument) + 9 > limit:  # +9: the NUL and argv's pointer
            calls.append(chunk)
            chunk, size = [], 0
        chunk.append(argument)
        size += len(argument) + 9
    calls.append(chunk)
    return [([*options, "--", *(os.fsdecode(a) for a in chunk), destination], b"")
            for chunk in calls]
