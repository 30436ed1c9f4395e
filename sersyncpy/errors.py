"""The error classes users see: each carries its one-line message and its exit code.

`cli.main` maps them to a line on stderr and the exit code; nothing else prints a traceback.
"""


class SersyncpyError(Exception):
    """Base of every error sersyncpy reports to its user."""

    exit_code = 1


class ConfigError(SersyncpyError):
    """The config file is invalid; the message names file:line, element, attribute and value."""

    exit_code = 2


class UsageError(SersyncpyError):
    """The command line is invalid."""

    exit_code = 2
