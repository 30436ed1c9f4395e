"""Which listed paths an rsync call that ended in exit 23 left behind, read from its stderr
(failed_paths). Building and running that call is rsync.py's; retrying what failed, the lane's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Optional

from sersyncpy.rsync import is_temp_name
from sersyncpy.rsyncrun import STDERR_KEPT

# Lines that name no failure to retry: the source changed (its own event follows), the final
# summaries, the note after a failed mkdir (whose line names the directory), and a checksum
# mismatch that rsync itself redoes (an "ERROR: ... failed verification" follows if that fails).
_BENIGN_STARTS = (
    "file has vanished: ",
    "rsync error: some files/attrs were not transferred (see previous errors) (code 23) ",
    "rsync warning: some files vanished before they could be transferred (code 24) ",
    "*** Skipping any contents from this failed directory ***",
)
_REDONE_ENDS = (" (will try again).", " (may try again).")
_ERROR_STARTS = ("rsync:", "rsync error", "rsync warning", "ERROR", "@ERROR", "WARNING")
_ROLE_TAGS = ("[sender]", "[receiver]", "[generator]", "[Receiver]", "[Sender]")
# Messages that name a path without quotes: (text before it, text after it, "" = line end).
_UNQUOTED = (
    ("delete_file: unlink(", ") failed"),
    ("delete_file: rmdir(", ") failed"),
    ("ERROR: ", " failed verification -- "),
    ("cannot delete non-empty directory: ", ""),
)
# Beyond this many quotes in one line the pairs get costly; such a line stays unattributed.
_MAX_QUOTES = 64


def failed_paths(
    stderr: str, listed: Sequence[str], root: str, *, directories: Optional[Iterable[str]] = None,
) -> Optional[set[str]]:
    """The `listed` paths (as given; "" is the root) that a `listed_argv` call ending in exit
    23 did not push, read from its stderr; None when that cannot be told: the caller then
    retries the whole batch. Never an empty set: exit 23 with nothing attributable is unknown.

    A listed path failed when a message names it, anything below it (a listed directory is
    sent whole), or a directory above it (a failed mkdir skips its content silently). Paths
    are matched as rsync prints them: below `root` for the sender, relative to the module
    ("b/f", or "/b/f" when chrooted) for the receiver, temporary names ".f.XXXXXX" as "f",
    \\#ooo escapes decoded. An absolute path not below `root` (the receiver's over ssh, or a
    root rsync printed resolved) matches by every suffix, so an unknown prefix may retry a
    path needlessly, never miss it.
    "file has vanished" is no failure: its own event follows. A line that looks like an
    error but names no listed path makes the answer None, and so does a stderr as long as
    the tail run() keeps, whose first lines may be lost.

    A sender-side error makes rsync skip every --delete of the run ("IO error encountered --
    skipping file deletion", on stdout only), so listed directories may keep extraneous
    files. Pass `directories`, the listed paths that were directories (empty when the call
    had no --delete), to retry those too; without it such a stderr gives None.
    """
    if len(stderr) >= STDERR_KEPT:  # run() kept the tail: the first lines may be lost
        return None
    index = _ListedIndex(listed)
    root_prefix = _clean_prefix(root)
    failed: set[str] = set()
    sender_failed = False
    # Only "\n" ends a message: rsync escapes control bytes in names, not U+2028 or U+0085.
    for line in stderr.split("\n"):
        if not line.strip() or line.startswith(_BENIGN_STARTS):
            continue
        if line.startswith("WARNING: ") and line.endswith(_REDONE_ENDS):
            continue
        if line.startswith("IO error encountered -- skipping file deletion"):
            sender_failed = True  # rsync prints it on stdout, but a caller may merge the two
            continue
        hits, under_root = index.attribute(_decode_escapes(line), root_prefix)
        if not hits:
            if line.startswith(_ERROR_STARTS) or any(tag in line for tag in _ROLE_TAGS):
                return None
            continue
        failed |= hits
        role = _role(line)
        sender_failed = sender_failed or role == "sender" or (role is None and under_root)
    if sender_failed:
        if directories is None:
            return None
        failed |= index.originals(_norm(d) for d in directories)
        failed |= index.originals([""])
    return failed or None


def _role(line: str) -> Optional[str]:
    """"sender" for "rsync: [sender] ...": which process wrote the message, when it says."""
    if not line.startswith("rsync: ["):
        return None
    end = line.find("] ", 8)
    return line[8:end].lower() if end > 0 else None


def _clean_prefix(path: str) -> Optional[str]:
    """An absolute directory as rsync prints names below it, without the trailing "/"."""
    if not path.startswith("/"):
        return None
    return "/" + _norm(path)  # "/" itself becomes "/", matched by startswith below


def _norm(path: str) -> str:
    """The spelling rsync uses for a relative path: no "./", "//" or trailing "/"; root ""."""
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def _decode_escapes(line: str) -> str:
    """Undo rsync's \\#ooo escapes (log.c, filtered_fwrite): the bytes of a name, as a str
    the way os.fsdecode spells it (surrogateescape for bytes that are not UTF-8)."""
    out = bytearray()
    pos = 0
    while True:
        at = line.find("\\#", pos)
        if at < 0:
            break
        digits = line[at + 2:at + 5]
        if len(digits) == 3 and digits[0] in "0123" and all(d in "01234567" for d in digits):
            out += line[pos:at].encode("utf-8", "surrogateescape") + bytes([int(digits, 8)])
            pos = at + 5
        else:
            out += line[pos:at + 2].encode("utf-8", "surrogateescape")
            pos = at + 2
    out += line[pos:].encode("utf-8", "surrogateescape")
    return os.fsdecode(bytes(out))


def _spans(text: str) -> list[tuple[str, bool]]:
    """Every substring that may be a path, and whether it is surely relative to the module:
    between any two quotes (names may hold quotes, so the pairing is not guessed), and the
    unquoted names of delete_file and ERROR lines (relative names, util1.c and delete.c)."""
    quotes = [i for i, char in enumerate(text) if char == '"']
    if len(quotes) > _MAX_QUOTES:
        quotes = []
    # full_fname() (util1.c) adds " (in MODULE)" to a name it gives relative to the module,
    # with a leading "/" when chrooted; so for those no prefix is ever to be guessed.
    spans = [(text[i + 1:j], text.startswith(" (in ", j + 1))
             for n, i in enumerate(quotes) for j in quotes[n + 1:]]
    for before, after in _UNQUOTED:
        start = text.find(before)
        while start >= 0:
            begin = start + len(before)
            if not after:
                spans.append((text[begin:], True))
            end = text.find(after, begin) if after else -1
            while end >= 0:
                spans.append((text[begin:end], True))
                end = text.find(after, end + 1)
            start = text.find(before, start + 1)
    return [(span, relative) for span, relative in spans if span]


def _relatives(span: str, root_prefix: Optional[str]) -> tuple[list[str], bool]:
    """The relative paths `span` may stand for, and whether it lies below the root."""
    if root_prefix is not None and (
            span == root_prefix or span.startswith(root_prefix.rstrip("/") + "/")):
        return [_norm(span[len(root_prefix):])], True
    if not span.startswith("/"):
        return [_norm(span)], False
    # Where the receiver's directory is unknown ("/srv/www/b/f" over ssh): any suffix.
    parts = span.split("/")
    return [_norm("/".join(parts[k:])) for k in range(1, len(parts))], False


def _untemp(rel: str) -> Optional[str]:
    """"d/f" for the receiver's temporary name "d/.f.XXXXXX"."""
    head, _, base = rel.rpartition("/")
    if not is_temp_name(base):
        return None
    return f"{head}/{base[1:-7]}" if head else base[1:-7]


class _ListedIndex:
    """The listed paths by their clean spelling, with every directory above each of them."""

    def __init__(self, listed: Sequence[str]) -> None:
        self._by_norm: dict[str, set[str]] = {}
        self._below: dict[str, set[str]] = {}  # ancestor -> listed paths strictly below it
        for path in listed:
            norm = _norm(path)
            self._by_norm.setdefault(norm, set()).add(path)
            parts = norm.split("/") if norm else []
            for depth in range(len(parts)):
                self._below.setdefault("/".join(parts[:depth]), set()).add(norm)

    def originals(self, norms: Iterable[str]) -> set[str]:
        return {path for norm in norms for path in self._by_norm.get(norm, ())}

    def related(self, rel: str) -> set[str]:
        """Listed paths that `rel` is, lies below, or lies above (their clean spellings)."""
        found = set(self._below.get(rel, ()))
        probe = rel
        while True:
            if probe in self._by_norm:
                found.add(probe)
            if not probe:
                return found
            probe = probe.rpartition("/")[0]

    def attribute(self, text: str, root_prefix: Optional[str]) -> tuple[set[str], bool]:
        """The listed paths one decoded message names, and whether one named lay below root."""
        hits: set[str] = set()
        under_root = False
        for span, relative in _spans(text):
            rels, is_root = ([_norm(span)], False) if relative else _relatives(span, root_prefix)
            for rel in rels:
                untemp = _untemp(rel)
                found = self.related(rel) | (self.related(untemp) if untemp is not None else set())
                if found:
                    hits |= found
                    under_root = under_root or is_root
        return self.originals(hits), under_root
