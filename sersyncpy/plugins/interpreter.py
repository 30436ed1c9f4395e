"""Whether a command plugin prefix is an interpreter that would run each changed file (or its
name) as code: how shells, script languages, awk and sed read their command lines. Pure; the
command plugin logs what this finds.
"""

from __future__ import annotations

import enum
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Syntax:
    """One interpreter's command line. Options are named with their dash ("-c", "--file");
    a short option's value is the rest of its cluster, else the next argument."""

    noun: str = "script"
    code_first: bool = False  # awk, sed: the first operand is the program text, not a file
    code: frozenset[str] = _NONE  # the value is the code (python -c, perl -e)
    code_operand: frozenset[str] = _NONE  # the first operand becomes the code (sh -c)
    program: frozenset[str] = _NONE  # the value names the program's file (php -f, awk -f)
    loads: frozenset[str] = _NONE  # the value is a file that runs too (node -r, gawk -l)
    harmless: frozenset[str] = _NONE  # no file runs: stdin, a module, a syntax check
    value: frozenset[str] = _NONE  # any other option with a value (sh -o, python -W)
    attached: frozenset[str] = _NONE  # the value, if any, is the rest of the cluster only
    digits: frozenset[str] = _NONE  # the value, if any, is the digits that follow (perl -l)
    dash_stdin: bool = True  # "-" is the script on stdin; else it ends the options (sh)
    plus: bool = False  # "+x" is an option too
    long_single_dash: bool = False  # "-encoding" is one option (tclsh)


def _set(*options: str) -> frozenset[str]:
    return frozenset(options)


_SHELL = _Syntax(code_operand=_set("-c"), harmless=_set("-s", "-n"), dash_stdin=False,
                 plus=True, value=_set("-o", "+o", "-O", "+O", "--rcfile", "--init-file"))
_AWK = _Syntax(
    noun="program", code_first=True, code=_set("-e", "--source"),
    program=_set("-f", "--file", "-E", "--exec"), loads=_set("-i", "--include", "-l", "--load"),
    value=_set("-v", "--assign", "-F", "--field-separator", "-W"), harmless=_set("--version"),
)
_SYNTAXES: tuple[tuple[str, _Syntax], ...] = (
    (r"(r?ba|da|z|k|mk|lk|pdk|y)?sh|ash|hush|posh|ksh93", _SHELL),
    (r"t?csh", _Syntax(code_operand=_set("-c"), harmless=_set("-s", "-n"))),
    ("fish", _Syntax(code=_set("-c", "--command"), harmless=_set("-n", "--no-execute"),
                     value=_set("-C", "--init-command", "-d", "--debug", "-o",
                                "--debug-output", "--features", "-f"))),
    (r"(python|pypy)[0-9.]*", _Syntax(code=_set("-c"), harmless=_set("-m"),
                                      value=_set("-W", "-X", "--check-hash-based-pycs"))),
    (r"perl[0-9.]*", _Syntax(code=_set("-e", "-E"), value=_set("-I"), digits=_set("-l", "-0"),
                             attached=_set("-i", "-x", "-M", "-m", "-C", "-d", "-D", "-F",
                                           "-V"))),
    (r"ruby[0-9.]*", _Syntax(code=_set("-e"), loads=_set("-r"),
                             value=_set("-I", "-C", "-E", "--encoding"),
                             attached=_set("-i", "-x", "-F", "-K", "-T", "-W", "-0"))),
    (r"php[0-9.]*(-cli|-cgi)?", _Syntax(
        code=_set("-r", "--run", "-R", "--process-code", "-B", "--process-begin", "-E",
                  "--process-end"),
        program=_set("-f", "--file", "-F", "--process-file"),
        harmless=_set("-l", "--syntax-check", "-s", "--syntax-highlight", "-w", "--strip",
                      "-a", "--interactive", "-i", "--info", "-m", "--modules"),
        value=_set("-c", "--php-ini", "-d", "--define", "-z", "--zend-extension", "-t",
                   "--docroot", "-S", "--server"))),
    (r"node(js)?", _Syntax(code=_set("-e", "--eval", "-p", "--print"),
                           loads=_set("-r", "--require", "--import", "--loader",
                                      "--experimental-loader"),
                           harmless=_set("-c", "--check", "-i", "--interactive"),
                           value=_set("-C", "--conditions", "--title", "--inspect-port",
                                      "--env-file", "--input-type"))),
    (r"lua[0-9.]*|luajit", _Syntax(value=_set("-e", "-l", "-j"), attached=_set("-O"),
                                   harmless=_set("-b"))),
    (r"(tclsh|wish)[0-9.]*|jimsh", _Syntax(value=_set("-encoding"), long_single_dash=True)),
    (r"(g|m|n|original-)?awk", _AWK),
    (r"g?sed", _Syntax(code_first=True, code=_set("-e", "--expression"),
                       program=_set("-f", "--file"), value=_set("-l", "--line-length"),
                       attached=_set("-i"), harmless=_set("--sandbox", "--version"))),
)


class _Runs(enum.Enum):
    FILE = "runs each changed file as {article} {program} {noun}"
    NAME = "runs the name of each changed path as {program} code"


def interpreter_hazard(prefix: Sequence[str]) -> Optional[str]:
    """What `prefix` (the command plugin's argv before the changed path) does with that path
    when it is an interpreter that takes the path as its code, as in "runs each changed file
    as a /bin/sh script"; None when the prefix names the script or passes it inline."""
    found = _interpreter(list(prefix))
    if found is None:
        return None
    program, syntax, args = found
    runs = _code_source(syntax, args)
    if runs is None:
        return None
    article = "an" if program[0] in "aeiou" else "a"
    return runs.value.format(article=article, program=program, noun=syntax.noun)


def _interpreter(argv: list[str]) -> Optional[tuple[str, _Syntax, list[str]]]:
    """(the program as written, its syntax, its arguments), looking through env and busybox."""
    while argv:
        name = os.path.basename(argv[0])
        if name == "env":
            argv = _after_env(argv[1:])
            continue
        if name == "busybox" and len(argv) > 1:
            syntax = _syntax(argv[1])
            return (f"{argv[0]} {argv[1]}", syntax, argv[2:]) if syntax else None
        syntax = _syntax(name)
        return (argv[0], syntax, argv[1:]) if syntax else None
    return None


def _syntax(name: str) -> Optional[_Syntax]:
    return next((syntax for pattern, syntax in _SYNTAXES if re.fullmatch(pattern, name)), None)


_ENV_VALUE = _set("-u", "--unset", "-C", "--chdir")


def _after_env(args: list[str]) -> list[str]:
    """env's own options and NAME=VALUE words skipped: the program's argv (-S split)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1:]
        if arg in ("-S", "--split-string"):
            return _split(args[i + 1], args[i + 2:]) if i + 1 < len(args) else []
        if arg.startswith(("-S", "--split-string=")):
            return _split(arg.partition("=")[2] if arg[1] == "-" else arg[2:], args[i + 1:])
        if not arg.startswith("-") and "=" not in arg:
            return args[i:]
        i += 2 if arg in _ENV_VALUE else 1  # an option, or NAME=VALUE for the program
    return []


def _split(words: str, rest: list[str]) -> list[str]:
    """env -S: one argument split into several, like a shell would (near enough)."""
    try:
        return _after_env(shlex.split(words) + rest)
    except ValueError:
        return []  # unbalanced quotes: env refuses to run anything


def _code_source(syntax: _Syntax, args: list[str]) -> Optional[_Runs]:
    """Where the code comes from once the changed path is appended to args: _Runs when it is
    the path (its content or its name), None when the prefix gives the code."""
    operand = _Runs.NAME if syntax.code_first else _Runs.FILE  # what the first operand is
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "-" and syntax.dash_stdin:
            return None  # the code is read from stdin (/dev/null for the command)
        if arg in ("-", "--"):
            return None if i < len(args) else operand
        if not _is_option(syntax, arg):
            return None  # the script, or the program text, is in the prefix
        for option, rest in _options(syntax, arg):
            if option in syntax.harmless:
                return None
            if option in syntax.code_operand:
                operand = _Runs.NAME
            if option not in syntax.code | syntax.program | syntax.loads | syntax.value:
                continue
            if rest is None:
                if i == len(args):  # the changed path becomes this option's value
                    return _dangling(syntax, option)
                i += 1
            if option in syntax.code or option in syntax.program:
                return None
    return operand


def _dangling(syntax: _Syntax, option: str) -> Optional[_Runs]:
    if option in syntax.code:
        return _Runs.NAME
    if option in syntax.program or option in syntax.loads:
        return _Runs.FILE
    return None


def _is_option(syntax: _Syntax, arg: str) -> bool:
    return len(arg) > 1 and (arg[0] == "-" or (syntax.plus and arg[0] == "+"))


def _options(syntax: _Syntax, arg: str) -> list[tuple[str, Optional[str]]]:
    """The options in arg, each with its value if arg holds it (None: it would be the next
    argument): "--file=x" -> [("--file", "x")], "-eo" -> [("-e", None), ("-o", None)]."""
    if arg.startswith("--") or syntax.long_single_dash:
        name, eq, value = arg.partition("=")
        return [(name, value if eq else None)]
    found: list[tuple[str, Optional[str]]] = []
    j = 1
    while j < len(arg):
        option, rest = arg[0] + arg[j], arg[j + 1:]
        if option in syntax.attached:
            return [*found, (option, rest)]
        if option in syntax.code | syntax.program | syntax.loads | syntax.value:
            return [*found, (option, rest or None)]
        found.append((option, None))
        j += 1
        if option in syntax.digits:  # perl -l0ne: -l0, then -n and -e
            while j < len(arg) and arg[j].isdigit():
                j += 1
    return found
