"""Reading confxml.xml as sersync 2.5 did (Frank Vanden Berghen's XMLParser 2.41 took malformed
files that lxml refuses): repair() rewrites such a file as the well-formed XML sersync made of it,
on the same lines. Cutting it into parts: xmltokens.py; rewriting a part: xmlparts.py.
"""

from __future__ import annotations

import enum
import functools
import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Callable

from lxml import etree

# Re-exported: config, which reads the repaired file, checks its values for NOT_TEXT here.
from sersyncpy.xmlparts import NOT_TEXT as NOT_TEXT
from sersyncpy.xmlparts import (
    Fix,
    cleaned,
    comment_bytes,
    end_bytes,
    entities,
    newlines,
    start_bytes,
    text_bytes,
)
from sersyncpy.xmltokens import SPACE, Part, Refusal, Token, show, start_tag, tokens


@dataclass(frozen=True)
class Repair:
    """One change, at a line of the user's file, in a short phrase."""

    line: int
    phrase: str
    # The file may not say what its writer meant (a value missing its closing quote keeps the
    # opening one, as in sersync): a config error in such a file quotes these repairs.
    doubtful: bool = False


class Unrepairable(ValueError):
    """A file sersync 2.5's parser could not read either."""

    def __init__(self, line: int, problem: str):
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


def repair(data: bytes) -> tuple[bytes, list[Repair]]:
    """(well-formed XML with the same meaning and line breaks, what was repaired). A
    well-formed file comes back unchanged; UTF-16 and UTF-32 ones, which this byte scanner
    cannot read, too (lxml reads them when they are well-formed)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\0" in data[:2]:
        return data, []
    lines = _Lines(data)
    try:
        out, fixes = _Builder(data, lines).build()
    except Refusal as exc:
        raise Unrepairable(lines.of(exc.offset), exc.problem) from None
    fixes.sort(key=lambda fix: fix.offset)
    return out, [Repair(lines.of(fix.offset), fix.phrase, fix.doubtful) for fix in fixes]


def summary(repairs: list[Repair]) -> str:
    """'lines 3, 7: bytes that are not UTF-8 in a comment; line 12: unquoted value of start'."""
    groups: dict[str, list[int]] = {}
    for one in sorted(repairs, key=lambda r: r.line):
        lines = groups.setdefault(one.phrase, [])
        if one.line not in lines:
            lines.append(one.line)
    return "; ".join(
        f"line {lines[0]}: {phrase}" if len(lines) == 1
        else f"lines {', '.join(map(str, lines))}: {phrase}"
        for phrase, lines in groups.items()
    )


def utf8_values(root: etree._Element) -> list[Repair]:
    """Values of a file declared in another encoding (the sample says ISO-8859-1) whose bytes
    are UTF-8 become that UTF-8 text: sersync passed the bytes on, and the system read them
    as UTF-8 (a Chinese directory name). Changes the tree; returns what it changed."""
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    if encoding.upper().replace("-", "").startswith(("UTF", "UCS")):
        return []
    changed = []
    for element in root.iter(tag=etree.Element):
        for name, value in element.attrib.items():
            try:
                as_utf8 = value.encode(encoding).decode("utf-8")
            except (LookupError, UnicodeError):
                continue  # not such bytes: the declared encoding holds
            if as_utf8 != value:
                element.set(name, as_utf8)
                phrase = f"value of {name} read as UTF-8, not {encoding}"
                changed.append(Repair(element.sourceline or 0, phrase))
    return changed


# --- positions ----------------------------------------------------------------------------


class _Lines:
    def __init__(self, data: bytes):
        self._newlines = [match.start() for match in re.finditer(b"\n", data)]

    def of(self, offset: int) -> int:
        return bisect_left(self._newlines, offset) + 1


# --- the document: where <head> is, what is open, what closes it ----------------------------

_PI = re.compile(rb"<\?[A-Za-z_][-A-Za-z0-9._]*(?:[ \t\r\n].*)?\?>", re.S)

_DECLARATION = re.compile(
    rb"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:\"1\.[0-9]+\"|'1\.[0-9]+')"
    rb"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:\"[A-Za-z][-A-Za-z0-9._]*\""
    rb"|'[A-Za-z][-A-Za-z0-9._]*'))?"
    rb"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:\"(?:yes|no)\"|'(?:yes|no)'))?"
    rb"[ \t\r\n]*\?>"
)
_ENCODING = re.compile(rb"encoding[ \t\r\n]*=[ \t\r\n]*[\"']?([A-Za-z][-A-Za-z0-9._]*)", re.I)
_BOM = b"\xef\xbb\xbf"


class _Root(enum.Enum):
    BEFORE = "before <head>"
    INSIDE = "inside <head>"
    AFTER = "after </head>"


@dataclass(frozen=True)
class _Open:
    written: bytes  # as its start tag wrote it: sersync matched end tags in any case
    emitted: bytes
    offset: int
    ignored: bool  # outside <head>: sersync never read it; taken out with all it holds


@functools.lru_cache(maxsize=64)
def _known(encoding: str) -> bool:
    """Whether libxml2, which parses the repaired file, knows the encoding (Python's codecs
    know names it does not, such as "UTF")."""
    try:
        etree.fromstring(f'<?xml version="1.0" encoding="{encoding}"?><a/>'.encode("ascii"))
    except (etree.XMLSyntaxError, UnicodeError, ValueError):
        return False
    return True


class _Builder:
    """One pass over the parts of the file, keeping sersync's tree of open elements."""

    def __init__(self, data: bytes, lines: _Lines):
        nul = data.find(b"\0")
        # sersync read the file as a C string: it ended at the first NUL byte.
        self.data = data if nul == -1 else data[:nul]
        self.rest = b"" if nul == -1 else data[nul:]
        self.lines = lines
        self.out: list[bytes] = []
        self.fixes: list[Fix] = []
        self.stack: list[_Open] = []
        self.root = _Root.BEFORE
        self.utf8 = True

    def build(self) -> tuple[bytes, list[Fix]]:
        handlers: dict[Part, Callable[[Token], None]] = {
            Part.TEXT: self._on_text, Part.COMMENT: self._on_comment,
            Part.CDATA: self._on_cdata, Part.DOCTYPE: self._on_doctype, Part.PI: self._on_pi,
            Part.START: self._on_start, Part.END: self._on_end,
        }
        for token in tokens(self.data, self._prolog()):
            handlers[token.part](token)
        self._finish()
        return b"".join(self.out), self.fixes

    def _prolog(self) -> int:
        """Emit the byte order mark and the XML declaration, moved to the very start as lxml
        wants it (sersync skipped white space before it); return where the content starts."""
        data = self.data
        bom = _BOM if data.startswith(_BOM) else b""
        at = len(bom)
        while at < len(data) and data[at] in SPACE:
            at += 1
        if data[at : at + 5].lower() != b"<?xml" or data[at + 5 : at + 6] not in b" \t\r\n?":
            self.out.append(bom)
            return len(bom)
        end = start_tag(data, at + 1).end  # as sersync read it: a tag, up to ">"
        declaration = self._declaration(data[at:end], at, bool(bom))
        if at > len(bom):
            self.fixes.append(Fix(at, "white space before the XML declaration"))
        self.out.append(bom + declaration + data[len(bom) : at])
        return end

    def _declaration(self, raw: bytes, at: int, bom: bool) -> bytes:
        found = _ENCODING.search(raw)
        encoding = found.group(1).decode() if found else None
        self.utf8 = bom or encoding is None or encoding.lower() in ("utf-8", "utf8")
        well_formed = _DECLARATION.fullmatch(raw) is not None
        if encoding and not bom and not _known(encoding):
            # sersync took the bytes as they were under a name it did not know: ISO-8859-1.
            self.fixes.append(Fix(at, f"unknown encoding {encoding} read as ISO-8859-1"))
            encoding, well_formed = "ISO-8859-1", False
        elif not well_formed:
            self.fixes.append(Fix(at, "malformed XML declaration"))
        if well_formed:
            return raw
        named = f' encoding="{encoding}"' if encoding else ""
        return f'<?xml version="1.0"{named}?>'.encode() + newlines(raw)

    def _inside(self) -> bool:
        return bool(self.stack) and not self.stack[0].ignored

    def _ignoring(self) -> bool:
        return bool(self.stack) and self.stack[0].ignored

    def _blank(self, token: Token) -> None:
        self.out.append(newlines(self.data[token.start : token.end]))

    def _outside(self, token: Token, what: str, offset: int) -> None:
        """Take out a part outside <head>: sersync kept it beside <head>, and never read it."""
        self._blank(token)
        if not self.stack:
            self.fixes.append(Fix(offset, f"{what} {self.root.value} ignored"))

    def _on_text(self, token: Token) -> None:
        raw = self.data[token.start : token.end]
        if self._inside():
            self.out.append(text_bytes(raw, token.start, self.utf8, self.fixes))
        elif not raw.strip(SPACE):
            self.out.append(raw)
        else:
            entities(raw, token.start, "text", [])  # sersync decoded it, "&" and all
            self._outside(token, "text", token.start + len(raw) - len(raw.lstrip(SPACE)))

    def _on_comment(self, token: Token) -> None:
        if self._ignoring():
            self._blank(token)
        else:
            self.out.append(comment_bytes(self.data, token, self.utf8, self.fixes))

    def _on_cdata(self, token: Token) -> None:
        if not self._inside():
            self._outside(token, "text", token.start)
            return
        body = self.data[token.start + 9 : token.end - 3]
        body = cleaned(body, token.start + 9, "text", self.utf8, b"?", self.fixes)
        self.out.append(b"<![CDATA[" + body + b"]]>")

    def _on_doctype(self, token: Token) -> None:
        if self.root is _Root.BEFORE and not self.stack:
            self.out.append(self.data[token.start : token.end])
        else:
            self._blank(token)
            if not self._ignoring():
                self.fixes.append(Fix(token.start, "<!DOCTYPE> after <head> ignored"))

    def _on_pi(self, token: Token) -> None:
        raw = self.data[token.start : token.end]
        if raw[2:5].lower() == b"xml" and raw[5:6] in b" \t\r\n?":
            if self.root is _Root.BEFORE and not self.stack:
                # sersync: the declaration then held <head>, beside the comment or text
                # before it, and "First Tag should be 'head'" (xmlParser.cpp, parseString).
                raise Refusal(token.start, "the XML declaration must come first, before any "
                                           "comment or text (sersync 2.5 refused it too)")
            self._blank(token)
            if not self._ignoring():
                self.fixes.append(Fix(token.start, "XML declaration inside the file ignored"))
        elif not raw.endswith((b"?>", b"/>")):  # sersync: an element a </name> might close
            raise Refusal(token.start, f'{show(raw[:20])} is not closed by "?>"')
        elif self._ignoring():
            self._blank(token)
        elif _PI.fullmatch(raw):
            self.out.append(cleaned(raw, token.start, "a <?...?>", self.utf8, b"?", self.fixes))
        else:
            self._blank(token)
            self.fixes.append(Fix(token.start, "malformed <?...?> ignored"))

    def _on_start(self, token: Token) -> None:
        tag = token.tag
        assert tag is not None
        written = self.data[tag.name.start : tag.name.end]
        top = not self.stack
        # sersync used the first <head> at the top; anything else there it kept and ignored.
        if self._ignoring() or (top and (self.root is not _Root.BEFORE
                                         or written.lower() != b"head")):
            self._outside(token, f"<{show(written)}>", tag.start)
            if not tag.empty:
                self.stack.append(_Open(written, written, tag.start, True))
            return
        text, emitted, fixes = start_bytes(self.data, tag, self.utf8)
        self.out.append(text)
        self.fixes.extend(fixes)
        if top:
            self.root = _Root.AFTER if tag.empty else _Root.INSIDE
        if not tag.empty:
            self.stack.append(_Open(written, emitted, tag.start, False))

    def _on_end(self, token: Token) -> None:
        """An end tag closes the innermost open element, named in any case. sersync unwound
        an end tag that named an outer one, but then stopped at its "Warning: Unmatched end
        tag" (openFileHelper exits on any error): an element left open was refused."""
        tag = token.tag
        assert tag is not None
        written = self.data[tag.name.start : tag.name.end]
        named = [i for i, opened in enumerate(self.stack)
                 if opened.written.lower() == written.lower()]
        if not named:
            raise Refusal(tag.start, f"</{show(written)}> closes no open element "
                                     "(sersync 2.5 refused it too)")
        if named[-1] != len(self.stack) - 1:
            inner = self.stack[-1]
            raise Refusal(inner.offset, f"<{show(inner.written)}> is not closed before "
                                        f"</{show(written)}> on line {self.lines.of(tag.start)}"
                                        " (sersync 2.5 refused it too)")
        opened = self.stack.pop()
        if opened.ignored:
            self._blank(token)
        else:
            self.out.append(end_bytes(self.data, tag, opened.written, opened.emitted,
                                      self.fixes))
        if not self.stack and self.root is _Root.INSIDE:
            self.root = _Root.AFTER

    def _finish(self) -> None:
        if self.root is _Root.BEFORE:
            raise Refusal(0, "no <head> element (sersync 2.5 refused it too: \"First Tag "
                             "should be 'head'\")")
        if self.stack:
            opened = self.stack[-1]
            ending = (f"the NUL byte on line {self.lines.of(len(self.data))}, where sersync "
                      "stopped reading," if self.rest else "the end of the file")
            raise Refusal(opened.offset, f"<{show(opened.written)}> is not closed before "
                                         f"{ending} (sersync 2.5 refused it too)")
        if self.rest:
            self.fixes.append(Fix(len(self.data), "everything after a NUL byte ignored"))
            self.out.append(newlines(self.rest))
