"""Converters: one per kind of value (boolean, integer, port, minutes, seconds, path, regex,
argv...), each turning a string into its value or raising ValueError that says what is wrong.
Used for confxml.xml's attributes, the command line and the SERSYNCPY_* settings.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from typing import Callable, Optional, TypeVar
from urllib.parse import urlsplit

from sersyncpy import statefiles

T = TypeVar("T")

RSYNC_INT_MAX = 2**31 - 1  # rsync refuses a larger --timeout, and every call would fail


class NotANumber(ValueError):
    """The text is no number at all (rather than a number out of range): for callers that
    word that case their own way (-n says "not a whole number")."""


def boolean(value: str) -> bool:
    return value == "true"  # sersync: only the exact string "true" is true


def boolean_default_true(value: str) -> bool:
    return value != "false"  # for sersyncpy's additions that are on unless turned off


def integer(value: str) -> int:
    text = value.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise NotANumber("not an integer")
    return int(text)


def non_negative(value: str) -> int:
    number = integer(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def positive(value: str) -> int:
    number = integer(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def seconds_for_rsync(value: str) -> int:
    number = non_negative(value)
    if number > RSYNC_INT_MAX:
        raise ValueError(f"too large (rsync takes at most {RSYNC_INT_MAX})")
    return number


def minutes(value: str) -> int:
    # sersync's atoi turns garbage and <= 0 into 600 silently; we refuse them.
    try:
        number = integer(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError("not a positive number of minutes")
    return number


def port(value: str) -> int:
    try:
        number = integer(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise ValueError("not a port number (1..65535)")
    return number


def port_or_zero(value: str) -> int:
    try:
        return 0 if integer(value) == 0 else port(value)
    except ValueError:
        raise ValueError("not a port number (1..65535, or 0 for none)") from None


def _number_of_seconds(value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise NotANumber("not a number of seconds") from None


def seconds(value: str) -> float:
    """Positive and finite."""
    number = _number_of_seconds(value)
    if not 0 < number < float("inf"):
        raise ValueError("must be a positive number of seconds")
    return number


def seconds_or_zero(value: str) -> float:
    """Zero or more (the SERSYNCPY_* tuning settings)."""
    number = _number_of_seconds(value)
    if not number >= 0:
        raise ValueError("must be zero or more")
    return number


def choice(*choices: str) -> Callable[[str], str]:
    def choose(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return choose


def lenient(converter: Callable[[str], T], default: T) -> Callable[[str], T]:
    """For values sersync ignores while their start is false: bad ones become the default."""

    def convert_or_default(value: str) -> T:
        try:
            return converter(value)
        except ValueError:
            return default

    return convert_or_default


def nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError("the URL's port is not a number (1..65535)") from None
    return value.strip()


def argv(value: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"cannot be split into arguments: {exc}") from None


def program(value: str) -> tuple[str, ...]:
    words = argv(value)
    if not words:
        raise ValueError("must name the program to run (the changed path is its argument)")
    return words


def remote_shell(value: str) -> str:
    program(value)  # rsync splits it the same way; check it names a program
    return value.strip()


def pattern(expression: str) -> re.Pattern[str]:
    """The compiled regex, as sersync's Boost regexes read it: "." also matches a newline
    (a newline in a file name)."""
    return re.compile(expression, re.DOTALL)


def regex(value: str) -> str:
    """A regex source that compiles (as pattern() compiles it)."""
    try:
        pattern(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


# Paths are trimmed: sersync put them on a shell command line (cd W && rsync ...
# --password-file=P), which dropped white space around them.


def path(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return os.path.abspath(value.strip())


def directory(value: str) -> str:
    """An existing directory, absolute."""
    if not value.strip():
        raise ValueError("must not be empty")
    found = os.path.abspath(value.strip())  # also strips trailing slashes, as sersync strips one
    try:
        mode = os.stat(found).st_mode
    except FileNotFoundError:
        raise ValueError("directory does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot use directory: {exc.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise ValueError("not a directory")
    return found


def password_file(value: str) -> Optional[str]:
    """A regular file only its owner can read, absolute; None for an empty value."""
    if not value.strip():
        return None  # as sersync: no --password-file at all
    found = os.path.abspath(value.strip())
    try:
        mode = os.stat(found).st_mode
    except OSError as exc:
        raise ValueError(f"cannot use password file: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ValueError("not a regular file")
    # Owner-only, as 0600 or 0400: rsync itself refuses a file others can read.
    if mode & 0o077:
        raise ValueError(f"mode {mode & 0o777:04o}, must be 0600 (readable by its owner only)")
    return found


def fail_log_path(value: str) -> str:
    """A file to write, absolute, in a directory that exists (or is the state directory, made
    at start); the default fail log for an empty value."""
    if not value.strip():
        return statefiles.default_fail_log()  # sersync would run "/bin/sh " on stdin
    found = os.path.abspath(value.strip())
    if os.path.isdir(found):
        raise ValueError("is a directory")
    # The state directory is created at start; any other must be there already.
    parent = os.path.dirname(found)
    if not os.path.isdir(parent) and parent != statefiles.state_dir():
        raise ValueError("its directory does not exist")
    return found
