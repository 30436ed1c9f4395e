"""sersyncpy's own files (fail log, status, lock, pid and log files): where they live by default,
and the checks each must pass before it is trusted, since another local user may have planted,
replaced or linked it (docs/security.md). Owns no file format.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Collection
from typing import Optional

from sersyncpy.errors import SersyncpyError

ROOT_STATE_DIR = "/var/lib/sersyncpy"  # the systemd unit's StateDirectory=
ROOT_RUN_DIR = "/run"
# Another user's file in the way of one of ours is replaced at most this many times in a row
# (it may be re-created as fast as it is removed).
REPLACE_TRIES = 3


class Untrusted(Exception):
    """A file read back from disk fails the checks; the message says why."""


def state_dir() -> str:
    """Where the fail log, its lock and the status file go by default: /var/lib/sersyncpy for
    root, $XDG_STATE_HOME/sersyncpy (~/.local/state/sersyncpy) for anyone else. Never /tmp,
    where another user can create our files first."""
    if os.geteuid() == 0:
        return ROOT_STATE_DIR
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is to be ignored
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "sersyncpy")


def default_fail_log() -> str:
    """Where the fail log goes when <failLog> names none: /var/lib/sersyncpy/rsync_fail_log.sh
    for root (sersync's sample said /tmp, where any local user can create it first)."""
    return os.path.join(state_dir(), "rsync_fail_log.sh")


def runtime_dir() -> str:
    """Where the pid file goes by default: /run for root, else $XDG_RUNTIME_DIR (a directory
    of the user's own) or, without one, the state directory."""
    if os.geteuid() == 0:
        return ROOT_RUN_DIR
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return runtime if os.path.isabs(runtime) and os.path.isdir(runtime) else state_dir()


def ensure_dir_of(path: str) -> None:
    """Create the directory `path` goes into when it is our default one (the state or the
    runtime directory, 0700) and missing; any other directory is the user's to make."""
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in (state_dir(), runtime_dir()) or os.path.isdir(directory):
        return
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for directory in reversed(missing):
        # Each one 0700 whatever the umask (makedirs would make the parents, ~/.local and
        # ~/.local/state, 0777 under umask 000, where anyone could swap what is inside);
        # root's own 0755, as systemd's StateDirectory= makes it, so that a monitoring user
        # can read the status file (the fail log in it is root's alone).
        mode = 0o755 if directory == ROOT_STATE_DIR else 0o700
        try:
            os.mkdir(directory, mode)
            os.chmod(directory, mode)
        except FileExistsError:
            continue
        except OSError as exc:
            raise SersyncpyError(f"{directory}: cannot create the directory: "
                                 f"{exc.strerror}") from None


def shared_directory(path: str) -> Optional[str]:
    """The directory holding `path` when others may write there (such as /tmp), else None."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return None
    return directory if mode & stat.S_IWOTH else None


def problem(st: os.stat_result, owners: Collection[int], max_bytes: int) -> Optional[str]:
    """Why a file with this stat is not to be trusted (None: it is): it must be a regular
    file, owned by one of `owners`, writable by its owner alone, at most `max_bytes` long."""
    if not stat.S_ISREG(st.st_mode):
        return f"it is not a regular file (type {stat.S_IFMT(st.st_mode):o})"
    if st.st_uid not in owners:
        return f"it belongs to uid {st.st_uid}, not to {' or '.join(map(str, sorted(owners)))}"
    if st.st_mode & 0o022:
        return f"others may write to it (mode {stat.S_IMODE(st.st_mode):04o})"
    if st.st_size > max_bytes:
        return f"it holds {st.st_size} bytes, more than the {max_bytes} expected at most"
    return None


def read_trusted(path: str, max_bytes: int,
                 owners: Optional[Collection[int]] = None) -> Optional[bytes]:
    """The bytes of `path`, or None when there is no file. Raises Untrusted when it is a
    symlink, a FIFO (never blocks on one), a device or a directory, another user's (`owners`,
    default: our effective uid), writable by others, or longer than `max_bytes` (a sparse
    file is never read whole)."""
    owners = {os.geteuid()} if owners is None else owners
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Untrusted("it is a symbolic link") from None
        raise Untrusted(f"cannot open it: {exc.strerror}") from None
    try:
        why = problem(os.fstat(fd), owners, max_bytes)
        if why:
            raise Untrusted(why)
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise Untrusted(f"cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew while we read
        raise Untrusted(f"it holds more than the {max_bytes} bytes expected at most")
    return data


def move_aside(path: str) -> tuple[Optional[str], str]:
    """Rename a file we will not use to PATH.rejected.TIME, never following a link: (the new
    name, "") or (None, why it could not be moved)."""
    aside = f"{path}.rejected.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    try:
        os.rename(path, aside)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    return aside, ""


def open_own(path: str, flags: int, mode: int, what: str = "the file") -> int:
    """Open `path` for writing (created with `mode`), as a file of ours: never through a
    symlink, never a FIFO or device, never another user's file or one others may write to.
    Such a file is removed and ours created in its place when the directory allows it;
    otherwise SersyncpyError says what is in the way. Returns the fd (close-on-exec)."""
    flags |= os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    why = ""
    for _ in range(REPLACE_TRIES):
        try:
            fd = os.open(path, flags, mode)
        except OSError as exc:
            # ELOOP for our O_NOFOLLOW; EACCES where fs.protected_symlinks refuses another
            # user's link in a sticky directory before O_NOFOLLOW is even looked at.
            if exc.errno not in (errno.ELOOP, errno.EACCES) or not os.path.islink(path):
                raise SersyncpyError(f"{path}: cannot write {what}: {exc.strerror}") from None
            why = f"it is a symbolic link of uid {os.lstat(path).st_uid}"
        else:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                if st.st_mode & 0o022:  # ours, left writable by others (an umask of 000)
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o022)
                return fd
            why = problem(st, {os.geteuid()}, max_bytes=st.st_size) or ""
            os.close(fd)
        try:
            os.unlink(path)
        except OSError as exc:
            raise SersyncpyError(f"{path}: cannot write {what}: not a file of ours ({why}), "
                                 f"and it cannot be removed ({exc.strerror})") from None
        flags |= os.O_EXCL  # from now on only a file this call creates will do
    raise SersyncpyError(f"{path}: cannot write {what}: it keeps being replaced by a file "
                         f"that is not ours ({why})")
