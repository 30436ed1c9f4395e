"""sersync 2.5's tokenizer (GetNextToken in xmlParser.cpp), lenient as it was: the file cut
into parts (text, comments, tags and their attributes) at byte offsets. Rewriting a part is
xmlparts.py's; the document and what is open in it, xmlrepair.py's.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional


class Refusal(Exception):
    """A file sersync 2.5 could not read either, at a byte offset (xmlrepair gives the line)."""

    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset = offset
        self.problem = problem


def show(name: bytes) -> str:
    """Bytes of the file as they go into a one-line message: control characters (a newline
    inside a token) escaped."""
    text = name.decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode()
                   for ch in text)


# --- sersync's tokens (GetNextToken) --------------------------------------------------------


class Kind(enum.Enum):
    WORD = "word"  # up to white space, "<", ">", "=" or "/>"
    QUOTED = "quoted"  # '...' or "...", with no "<" inside
    EQUALS = "="
    CLOSE = ">"
    SHORT_CLOSE = "/>"
    OPEN = "<"  # also "</", "<?", "<!--": each ends a tag
    END = "end of file"


@dataclass(frozen=True)
class Lexeme:
    kind: Kind
    start: int
    end: int


SPACE = b" \t\r\n"  # sersync's XML_isSPACECHAR
_WORD_REST = re.compile(rb"(?:[^ \t\r\n<>=/]|/(?!>))*")
_SINGLE = {b"<": Kind.OPEN, b"=": Kind.EQUALS, b">": Kind.CLOSE}


def _lexeme(data: bytes, pos: int) -> Lexeme:
    """The token at pos, after white space, cut as sersync's GetNextToken cut it."""
    while pos < len(data) and data[pos] in SPACE:
        pos += 1
    if pos == len(data):
        return Lexeme(Kind.END, pos, pos)
    char = data[pos : pos + 1]
    if char in (b'"', b"'"):
        close, lt = data.find(char, pos + 1), data.find(b"<", pos + 1)
        if close != -1 and (lt == -1 or close < lt):
            return Lexeme(Kind.QUOTED, pos, close + 1)
        # No closing quote before the next "<": sersync read a word from the quote on.
    elif char in _SINGLE:
        return Lexeme(_SINGLE[char], pos, pos + 1)
    elif data.startswith(b"/>", pos):
        return Lexeme(Kind.SHORT_CLOSE, pos, pos + 2)
    rest = _WORD_REST.match(data, pos + 1)  # the first byte is in the word, whatever it is
    return Lexeme(Kind.WORD, pos, rest.end() if rest else pos + 1)


@dataclass(frozen=True)
class Attribute:
    name: Lexeme
    value: Optional[Lexeme]  # a WORD or QUOTED; None when the name stands alone


@dataclass(frozen=True)
class Tag:
    start: int  # at "<"
    name: Lexeme
    attributes: tuple[Attribute, ...]
    end: int
    empty: bool  # "/>"


def start_tag(data: bytes, start: int) -> Tag:
    """A start tag, read with sersync's states: name, then "=", then value."""
    name = _lexeme(data, start + 1)
    if name.kind is not Kind.WORD:
        raise Refusal(start, '"<" without an element name (sersync 2.5 refused it too)')
    attributes: list[Attribute] = []
    pending: Optional[Lexeme] = None  # an attribute name, its value not read yet
    equals = False
    lexeme = name
    while True:
        lexeme = _lexeme(data, lexeme.end)
        kind = lexeme.kind
        if kind is Kind.END:
            tag = show(data[name.start : name.end])
            raise Refusal(start, f"<{tag}> is cut off by the end of the file (sersync 2.5 "
                                 "refused it too)")
        if equals and pending is not None and kind in (Kind.WORD, Kind.QUOTED):
            attributes.append(Attribute(pending, lexeme))
            pending, equals = None, False
        elif not equals and kind in (Kind.WORD, Kind.CLOSE, Kind.SHORT_CLOSE):
            if pending is not None:
                attributes.append(Attribute(pending, None))
            if kind is not Kind.WORD:
                return Tag(start, name, tuple(attributes), lexeme.end,
                           kind is Kind.SHORT_CLOSE)
            pending = lexeme
        elif kind is Kind.EQUALS and pending is not None and not equals:
            equals = True
        else:
            raise _unexpected(data, start, name, pending if equals else None, lexeme)


def _unexpected(data: bytes, start: int, name: Lexeme, after: Optional[Lexeme],
                lexeme: Lexeme) -> Refusal:
    tag = f"<{show(data[name.start:name.end])}>"
    if lexeme.kind is Kind.OPEN:
        return Refusal(start, f'{tag} is not closed before the next "<" (sersync 2.5 refused it '
                              'too; a value cannot hold "<": write &lt;)')
    if after is not None:
        problem = f"no value after {show(data[after.start:after.end])}= in {tag}"
    elif lexeme.kind is Kind.EQUALS:
        problem = f'"=" in {tag} has no attribute name before it'
    else:
        text = show(data[lexeme.start : lexeme.end])
        problem = f'{text} in {tag} has no attribute name and "=" before it'
    return Refusal(start, f"{problem} (sersync 2.5 refused it too)")


def _end_tag(data: bytes, start: int) -> Tag:
    name = _lexeme(data, start + 2)
    if name.kind is not Kind.WORD:
        raise Refusal(start, '"</" without an element name (sersync 2.5 refused it too)')
    close = _lexeme(data, name.end)
    if close.kind is not Kind.CLOSE:
        written = show(data[name.start : name.end])
        raise Refusal(start, f'</{written} is not closed by ">" right after its name '
                             "(sersync 2.5 refused it too)")
    return Tag(start, name, (), close.end, False)


# --- the file's parts ---------------------------------------------------------------------


class Part(enum.Enum):
    TEXT = "text"
    COMMENT = "comment"
    CDATA = "CDATA section"
    DOCTYPE = "<!DOCTYPE>"
    PI = "<?...?>"
    START = "start tag"
    END = "end tag"


@dataclass(frozen=True)
class Token:
    part: Part
    start: int
    end: int
    tag: Optional[Tag] = None


# sersync's "clear tags", found by strstr: nothing inside them is markup. (Its fourth, <PRE>,
# is left out: no config holds one, and lxml reads it as an element.)
_CLEAR = ((b"<!--", b"-->", Part.COMMENT), (b"<![CDATA[", b"]]>", Part.CDATA))


def tokens(data: bytes, pos: int) -> Iterator[Token]:
    """The parts of the file from pos on: every "<" starts one, as in sersync."""
    while pos < len(data):
        lt = data.find(b"<", pos)
        lt = len(data) if lt == -1 else lt
        if lt > pos:
            yield Token(Part.TEXT, pos, lt)
        if lt == len(data):
            return
        token = _markup(data, lt)
        yield token
        pos = token.end


def _markup(data: bytes, lt: int) -> Token:
    for opening, closing, part in _CLEAR:
        if data.startswith(opening, lt):
            end = data.find(closing, lt + len(opening))
            if end == -1:
                raise Refusal(lt, f"{part.value} never closed by {closing.decode()} "
                                  "(sersync 2.5 refused it too)")
            return Token(part, lt, end + len(closing))
    if data.startswith(b"<!DOCTYPE", lt):
        # sersync: up to ">", or to "]>" when a "<" comes first (an internal subset).
        gt, inner = data.find(b">", lt), data.find(b"<", lt + 1)
        end = data.find(b"]>", lt) + 1 if inner != -1 and (gt == -1 or inner < gt) else gt
        if end <= 0:
            raise Refusal(lt, "<!DOCTYPE never closed by > (sersync 2.5 refused it too)")
        return Token(Part.DOCTYPE, lt, end + 1)
    if data.startswith(b"<?", lt):  # sersync read it as a tag: it ends at ">" or "/>"
        if data.find(b">", lt) == -1:  # (sersync took even that, open elements and all)
            raise Refusal(lt, '"<?" is never closed by "?>"')
        return Token(Part.PI, lt, start_tag(data, lt + 1).end)
    if data.startswith(b"</", lt):
        tag = _end_tag(data, lt)
        return Token(Part.END, lt, tag.end, tag)
    tag = start_tag(data, lt)
    return Token(Part.START, lt, tag.end, tag)
