"""Reading confxml.xml as sersync 2.5 did: its parser (Frank Vanden Berghen's XMLParser 2.41,
xmlParser.cpp) took malformed files that lxml refuses. repair() rewrites such a file as the
well-formed XML sersync made of it, on the same lines; config owns what the values mean.
"""

from __future__ import annotations

import codecs
import enum
import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, Optional

from lxml import etree

# Stands in a value for bytes that are not text in the file's encoding; config refuses a
# value holding it when the value is read (sersync passed those bytes on as they were).
NOT_TEXT = "\ufffd"
_NOT_TEXT_REFERENCE = b"&#65533;"


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
    except _Refusal as exc:
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


@dataclass(frozen=True)
class _Fix:
    offset: int
    phrase: str
    doubtful: bool = False


class _Refusal(Exception):
    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset = offset
        self.problem = problem


class _Lines:
    def __init__(self, data: bytes):
        self._newlines = [match.start() for match in re.finditer(b"\n", data)]

    def of(self, offset: int) -> int:
        return bisect_left(self._newlines, offset) + 1


def _newlines(raw: bytes) -> bytes:
    """What is left of text taken out: its line breaks, so that later lines keep their number."""
    return b"\n" * raw.count(b"\n")


def _show(name: bytes) -> str:
    return name.decode("utf-8", "replace")


# --- sersync's tokens (GetNextToken) --------------------------------------------------------


class _Kind(enum.Enum):
    WORD = "word"  # up to white space, "<", ">", "=" or "/>"
    QUOTED = "quoted"  # '...' or "...", with no "<" inside
    EQUALS = "="
    CLOSE = ">"
    SHORT_CLOSE = "/>"
    OPEN = "<"  # also "</", "<?", "<!--": each ends a tag
    END = "end of file"


@dataclass(frozen=True)
class _Lexeme:
    kind: _Kind
    start: int
    end: int


_SPACE = b" \t\r\n"  # sersync's XML_isSPACECHAR
_WORD_REST = re.compile(rb"(?:[^ \t\r\n<>=/]|/(?!>))*")
_SINGLE = {b"<": _Kind.OPEN, b"=": _Kind.EQUALS, b">": _Kind.CLOSE}


def _lexeme(data: bytes, pos: int) -> _Lexeme:
    """The token at pos, after white space, cut as sersync's GetNextToken cut it."""
    while pos < len(data) and data[pos] in _SPACE:
        pos += 1
    if pos == len(data):
        return _Lexeme(_Kind.END, pos, pos)
    char = data[pos : pos + 1]
    if char in (b'"', b"'"):
        close, lt = data.find(char, pos + 1), data.find(b"<", pos + 1)
        if close != -1 and (lt == -1 or close < lt):
            return _Lexeme(_Kind.QUOTED, pos, close + 1)
        # No closing quote before the next "<": sersync read a word from the quote on.
    elif char in _SINGLE:
        return _Lexeme(_SINGLE[char], pos, pos + 1)
    elif data.startswith(b"/>", pos):
        return _Lexeme(_Kind.SHORT_CLOSE, pos, pos + 2)
    rest = _WORD_REST.match(data, pos + 1)  # the first byte is in the word, whatever it is
    return _Lexeme(_Kind.WORD, pos, rest.end() if rest else pos + 1)


@dataclass(frozen=True)
class _Attribute:
    name: _Lexeme
    value: Optional[_Lexeme]  # a WORD or QUOTED; None when the name stands alone


@dataclass(frozen=True)
class _Tag:
    start: int  # at "<"
    name: _Lexeme
    attributes: tuple[_Attribute, ...]
    end: int
    empty: bool  # "/>"


def _start_tag(data: bytes, start: int) -> _Tag:
    """A start tag, read with sersync's states: name, then "=", then value."""
    name = _lexeme(data, start + 1)
    if name.kind is not _Kind.WORD:
        raise _Refusal(start, '"<" without an element name (sersync 2.5 refused it too)')
    attributes: list[_Attribute] = []
    pending: Optional[_Lexeme] = None  # an attribute name, its value not read yet
    equals = False
    lexeme = name
    while True:
        lexeme = _lexeme(data, lexeme.end)
        kind = lexeme.kind
        if kind is _Kind.END:
            tag = _show(data[name.start : name.end])
            raise _Refusal(start, f"<{tag}> is cut off by the end of the file (sersync 2.5 "
                                  "refused it too)")
        if equals and pending is not None and kind in (_Kind.WORD, _Kind.QUOTED):
            attributes.append(_Attribute(pending, lexeme))
            pending, equals = None, False
        elif not equals and kind in (_Kind.WORD, _Kind.CLOSE, _Kind.SHORT_CLOSE):
            if pending is not None:
                attributes.append(_Attribute(pending, None))
            if kind is not _Kind.WORD:
                return _Tag(start, name, tuple(attributes), lexeme.end,
                            kind is _Kind.SHORT_CLOSE)
            pending = lexeme
        elif kind is _Kind.EQUALS and pending is not None and not equals:
            equals = True
        else:
            raise _unexpected(data, start, name, pending if equals else None, lexeme)


def _unexpected(data: bytes, start: int, name: _Lexeme, after: Optional[_Lexeme],
                lexeme: _Lexeme) -> _Refusal:
    tag = f"<{_show(data[name.start:name.end])}>"
    if lexeme.kind is _Kind.OPEN:
        return _Refusal(start, f'{tag} is not closed before the next "<" (sersync 2.5 refused it '
                               'too; a value cannot hold "<": write &lt;)')
    if after is not None:
        problem = f"no value after {_show(data[after.start:after.end])}= in {tag}"
    elif lexeme.kind is _Kind.EQUALS:
        problem = f'"=" in {tag} has no attribute name before it'
    else:
        text = _show(data[lexeme.start : lexeme.end])
        problem = f'{text} in {tag} has no attribute name and "=" before it'
    return _Refusal(start, f"{problem} (sersync 2.5 refused it too)")


def _end_tag(data: bytes, start: int) -> _Tag:
    name = _lexeme(data, start + 2)
    if name.kind is not _Kind.WORD:
        raise _Refusal(start, '"</" without an element name (sersync 2.5 refused it too)')
    close = _lexeme(data, name.end)
    if close.kind is not _Kind.CLOSE:
        written = _show(data[name.start : name.end])
        raise _Refusal(start, f'</{written} is not closed by ">" right after its name '
                              "(sersync 2.5 refused it too)")
    return _Tag(start, name, (), close.end, False)


# --- the file's parts ---------------------------------------------------------------------


class _Part(enum.Enum):
    TEXT = "text"
    COMMENT = "comment"
    CDATA = "CDATA section"
    DOCTYPE = "<!DOCTYPE>"
    PI = "<?...?>"
    START = "start tag"
    END = "end tag"


@dataclass(frozen=True)
class _Token:
    part: _Part
    start: int
    end: int
    tag: Optional[_Tag] = None


# sersync's "clear tags", found by strstr: nothing inside them is markup. (Its fourth, <PRE>,
# is left out: no config holds one, and lxml reads it as an element.)
_CLEAR = ((b"<!--", b"-->", _Part.COMMENT), (b"<![CDATA[", b"]]>", _Part.CDATA))


def _tokens(data: bytes, pos: int) -> Iterator[_Token]:
    """The parts of the file from pos on: every "<" starts one, as in sersync."""
    while pos < len(data):
        lt = data.find(b"<", pos)
        lt = len(data) if lt == -1 else lt
        if lt > pos:
            yield _Token(_Part.TEXT, pos, lt)
        if lt == len(data):
            return
        token = _markup(data, lt)
        yield token
        pos = token.end


def _markup(data: bytes, lt: int) -> _Token:
    for opening, closing, part in _CLEAR:
        if data.startswith(opening, lt):
            end = data.find(closing, lt + len(opening))
            if end == -1:
                raise _Refusal(lt, f"{part.value} never closed by {closing.decode()} "
                                   "(sersync 2.5 refused it too)")
            return _Token(part, lt, end + len(closing))
    if data.startswith(b"<!DOCTYPE", lt):
        # sersync: up to ">", or to "]>" when a "<" comes first (an internal subset).
        gt, inner = data.find(b">", lt), data.find(b"<", lt + 1)
        end = data.find(b"]>", lt) + 1 if inner != -1 and (gt == -1 or inner < gt) else gt
        if end <= 0:
            raise _Refusal(lt, "<!DOCTYPE never closed by > (sersync 2.5 refused it too)")
        return _Token(_Part.DOCTYPE, lt, end + 1)
    if data.startswith(b"<?", lt):  # sersync read it as a tag: it ends at ">" or "/>"
        if data.find(b">", lt) == -1:  # (sersync took even that, open elements and all)
            raise _Refusal(lt, '"<?" is never closed by "?>"')
        return _Token(_Part.PI, lt, _start_tag(data, lt + 1).end)
    if data.startswith(b"</", lt):
        tag = _end_tag(data, lt)
        return _Token(_Part.END, lt, tag.end, tag)
    tag = _start_tag(data, lt)
    return _Token(_Part.START, lt, tag.end, tag)


# --- rewriting one part as lxml takes it ----------------------------------------------------

# An XML name; without ":", which lxml would want declared as a namespace prefix.
_NAME = re.compile(rb"[A-Za-z_\x80-\xff][-A-Za-z0-9._\x80-\xff]*")
_NOT_NAME = re.compile(rb"[^-A-Za-z0-9._\x80-\xff]")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # XML 1.0 cannot hold them at all
_HYPHEN = re.compile(rb"-(?=-|\Z)")  # each "-" of a "--", and a last "-" (before "-->")
_AMPERSAND = re.compile(
    rb"&(?:(?P<number>#[0-9]+;|#[xX][0-9A-Fa-f]+;)|(?P<name>amp|lt|gt|quot|apos);)?", re.I
)
_ENTITIES = "&amp; &lt; &gt; &quot; &apos; &#N;"
_PI = re.compile(rb"<\?[A-Za-z_][-A-Za-z0-9._]*(?:[ \t\r\n].*)?\?>", re.S)


def _is_name(name: bytes, utf8: bool) -> bool:
    if not _NAME.fullmatch(name):
        return False
    try:
        name.decode("utf-8" if utf8 else "latin-1")
    except UnicodeDecodeError:
        return False
    return True


def _element_name(name: bytes, utf8: bool) -> bytes:
    if _is_name(name, utf8):
        return name
    try:
        name.decode("utf-8" if utf8 else "latin-1")
    except UnicodeDecodeError:
        name = re.sub(rb"[\x80-\xff]", b"_", name)
    name = _NOT_NAME.sub(b"_", name)
    return name if _NAME.fullmatch(name) else b"_" + name


def _cleaned(chunk: bytes, offset: int, where: str, utf8: bool, replacement: bytes,
             fixes: list[_Fix]) -> bytes:
    """chunk with what XML cannot hold replaced: control characters, and in a UTF-8 file
    bytes that are not UTF-8 (GBK comments under encoding="UTF-8")."""
    found = []
    control = _CONTROL.search(chunk)
    if control:
        found.append((control.start(), "control characters"))
    if utf8:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            found.append((exc.start, "bytes that are not UTF-8"))
    if not found:
        return chunk
    at, what = min(found)
    fixes.append(_Fix(offset + at, f"{what} in {where}"))
    chunk = _CONTROL.sub(replacement, chunk)
    if utf8:  # "replace" never takes in an ASCII byte, so no line break is lost
        chunk = chunk.decode("utf-8", "replace").encode().replace(NOT_TEXT.encode(), replacement)
    return chunk


def _entities(raw: bytes, offset: int, where: str, fixes: list[_Fix]) -> bytes:
    """raw with its entities as lxml wants them. sersync matched entity names in any case
    (&AMP;), and stopped at any other "&" (its fromXMLString: "Unknown character entity")."""

    def one(match: re.Match) -> bytes:
        written = match.group(0)
        if match.group("number") is None and match.group("name") is None:
            raise _Refusal(offset + match.start(), f'"&" in {where} is not one of {_ENTITIES} '
                                                   "(sersync 2.5 refused it too)")
        wanted = written.lower() if match.group("name") else written.replace(b"&#X", b"&#x")
        if wanted != written:
            fixes.append(_Fix(offset + match.start(), f"{_show(written)} read as {_show(wanted)}"))
        return wanted

    return _AMPERSAND.sub(one, raw)


def _text(raw: bytes, offset: int, utf8: bool, fixes: list[_Fix]) -> bytes:
    text = _entities(raw, offset, "text", fixes)
    if b"]]>" in text:
        fixes.append(_Fix(offset + text.index(b"]]>"), '"]]>" in text'))
        text = text.replace(b"]]>", b"]]&gt;")
    return _cleaned(text, offset, "text", utf8, b"?", fixes)


def _comment(data: bytes, token: _Token, utf8: bool, fixes: list[_Fix]) -> bytes:
    start = token.start + 4
    body = data[start : token.end - 3]
    double = body.find(b"--")
    if double != -1 or body.endswith(b"-"):
        at = double if double != -1 else len(body) - 1
        fixes.append(_Fix(start + at, '"--" inside a comment'))
        body = _HYPHEN.sub(b" ", body)
    return b"<!--" + _cleaned(body, start, "a comment", utf8, b"?", fixes) + b"-->"


def _value(data: bytes, lexeme: _Lexeme, name: str, utf8: bool,
           fixes: list[_Fix]) -> bytes:
    quoted = lexeme.kind is _Kind.QUOTED
    start = lexeme.start + quoted
    where = f"the value of {name}"
    text = _entities(data[start : lexeme.end - quoted], start, where, fixes)
    text = _cleaned(text, start, where, utf8, _NOT_TEXT_REFERENCE, fixes)
    if quoted:
        quote = data[lexeme.start : lexeme.start + 1]
        return quote + text + quote
    if text[:1] in (b'"', b"'"):  # sersync kept the quote that found no partner
        fixes.append(_Fix(lexeme.start, f"value of {name} has no closing quote", True))
    else:
        fixes.append(_Fix(lexeme.start, f"unquoted value of {name}"))
    if b'"' in text and b"'" not in text:
        return b"'" + text + b"'"
    return b'"' + text.replace(b'"', b"&quot;") + b'"'


def _attribute(data: bytes, attribute: _Attribute, previous: int, seen: set[bytes],
               utf8: bool, fixes: list[_Fix]) -> bytes:
    name_at = attribute.name
    end = (attribute.value or name_at).end
    name = data[name_at.start : name_at.end]
    shown = _show(name)
    if name in seen or not _is_name(name, utf8):
        phrase = (f"{shown} given twice (the first is read, as by sersync)" if name in seen
                  else f"attribute {shown} is not a name (ignored)")
        fixes.append(_Fix(name_at.start, phrase))
        return _newlines(data[previous:end])
    seen.add(name)
    before = data[previous : name_at.start]
    if not before:
        fixes.append(_Fix(name_at.start, f"no space before {shown}"))
        before = b" "
    if attribute.value is None:  # sersync: a NULL value (a crash where it read one)
        fixes.append(_Fix(name_at.start, f'no value for {shown} (read as "")'))
        return before + name + b'=""'
    middle = data[name_at.end : attribute.value.start]  # "=" and white space
    return before + name + middle + _value(data, attribute.value, shown, utf8, fixes)


def _start_bytes(data: bytes, tag: _Tag, utf8: bool) -> tuple[bytes, bytes, list[_Fix]]:
    """(the start tag as lxml takes it, the element name in it, what was repaired)."""
    written = data[tag.name.start : tag.name.end]
    emitted = _element_name(written, utf8)
    fixes: list[_Fix] = []
    if emitted != written:
        phrase = f"<{_show(written)}> is not an element name (read as <{_show(emitted)}>)"
        fixes.append(_Fix(tag.start, phrase))
    gap = data[tag.start + 1 : tag.name.start]
    if gap:
        fixes.append(_Fix(tag.start, 'space after "<"'))
    pieces = [b"<", emitted, gap]
    previous, seen = tag.name.end, set()
    for attribute in tag.attributes:
        pieces.append(_attribute(data, attribute, previous, seen, utf8, fixes))
        previous = (attribute.value or attribute.name).end
    pieces.append(data[previous : tag.end])
    if not fixes:
        return data[tag.start : tag.end], written, []
    return b"".join(pieces), emitted, fixes


def _end_bytes(data: bytes, tag: _Tag, written_open: bytes, emitted: bytes,
               fixes: list[_Fix]) -> bytes:
    written = data[tag.name.start : tag.name.end]
    gap = data[tag.start + 2 : tag.name.start]
    if not gap and written == emitted:
        return data[tag.start : tag.end]
    if gap:
        fixes.append(_Fix(tag.start, 'space after "</"'))
    if written != written_open:  # sersync compared names whatever their case
        fixes.append(_Fix(tag.start, f"</{_show(written)}> closes <{_show(written_open)}>"))
    return b"</" + emitted + gap + data[tag.name.end : tag.end]


# --- the document: where <head> is, what is open, what closes it ----------------------------

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


def _known(encoding: str) -> bool:
    try:
        codecs.lookup(encoding)
    except LookupError:
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
        self.fixes: list[_Fix] = []
        self.stack: list[_Open] = []
        self.root = _Root.BEFORE
        self.utf8 = True

    def build(self) -> tuple[bytes, list[_Fix]]:
        handlers: dict[_Part, Callable[[_Token], None]] = {
            _Part.TEXT: self._on_text, _Part.COMMENT: self._on_comment,
            _Part.CDATA: self._on_cdata, _Part.DOCTYPE: self._on_doctype, _Part.PI: self._on_pi,
            _Part.START: self._on_start, _Part.END: self._on_end,
        }
        for token in _tokens(self.data, self._prolog()):
            handlers[token.part](token)
        self._finish()
        return b"".join(self.out), self.fixes

    def _prolog(self) -> int:
        """Emit the byte order mark and the XML declaration, moved to the very start as lxml
        wants it (sersync skipped white space before it); return where the content starts."""
        data = self.data
        bom = _BOM if data.startswith(_BOM) else b""
        at = len(bom)
        while at < len(data) and data[at] in _SPACE:
            at += 1
        if data[at : at + 5].lower() != b"<?xml" or data[at + 5 : at + 6] not in b" \t\r\n?":
            self.out.append(bom)
            return len(bom)
        end = _start_tag(data, at + 1).end  # as sersync read it: a tag, up to ">"
        declaration = self._declaration(data[at:end], at, bool(bom))
        if at > len(bom):
            self.fixes.append(_Fix(at, "white space before the XML declaration"))
        self.out.append(bom + declaration + data[len(bom) : at])
        return end

    def _declaration(self, raw: bytes, at: int, bom: bool) -> bytes:
        found = _ENCODING.search(raw)
        encoding = found.group(1).decode() if found else None
        self.utf8 = bom or encoding is None or encoding.lower() in ("utf-8", "utf8")
        well_formed = _DECLARATION.fullmatch(raw) is not None
        if encoding and not bom and not _known(encoding):
            # sersync took the bytes as they were under a name it did not know: ISO-8859-1.
            self.fixes.append(_Fix(at, f"unknown encoding {encoding} read as ISO-8859-1"))
            encoding, well_formed = "ISO-8859-1", False
        elif not well_formed:
            self.fixes.append(_Fix(at, "malformed XML declaration"))
        if well_formed:
            return raw
        named = f' encoding="{encoding}"' if encoding else ""
        return f'<?xml version="1.0"{named}?>'.encode() + _newlines(raw)

    def _inside(self) -> bool:
        return bool(self.stack) and not self.stack[0].ignored

    def _ignoring(self) -> bool:
        return bool(self.stack) and self.stack[0].ignored

    def _blank(self, token: _Token) -> None:
        self.out.append(_newlines(self.data[token.start : token.end]))

    def _outside(self, token: _Token, what: str, offset: int) -> None:
        """Take out a part outside <head>: sersync kept it beside <head>, and never read it."""
        self._blank(token)
        if not self.stack:
            self.fixes.append(_Fix(offset, f"{what} {self.root.value} ignored"))

    def _on_text(self, token: _Token) -> None:
        raw = self.data[token.start : token.end]
        if self._inside():
            self.out.append(_text(raw, token.start, self.utf8, self.fixes))
        elif not raw.strip(_SPACE):
            self.out.append(raw)
        else:
            _entities(raw, token.start, "text", [])  # sersync decoded it, "&" and all
            self._outside(token, "text", token.start + len(raw) - len(raw.lstrip(_SPACE)))

    def _on_comment(self, token: _Token) -> None:
        if self._ignoring():
            self._blank(token)
        else:
            self.out.append(_comment(self.data, token, self.utf8, self.fixes))

    def _on_cdata(self, token: _Token) -> None:
        if not self._inside():
            self._outside(token, "text", token.start)
            return
        body = self.data[token.start + 9 : token.end - 3]
        body = _cleaned(body, token.start + 9, "text", self.utf8, b"?", self.fixes)
        self.out.append(b"<![CDATA[" + body + b"]]>")

    def _on_doctype(self, token: _Token) -> None:
        if self.root is _Root.BEFORE and not self.stack:
            self.out.append(self.data[token.start : token.end])
        else:
            self._blank(token)
            if not self._ignoring():
                self.fixes.append(_Fix(token.start, "<!DOCTYPE> after <head> ignored"))

    def _on_pi(self, token: _Token) -> None:
        raw = self.data[token.start : token.end]
        if raw[2:5].lower() == b"xml" and raw[5:6] in b" \t\r\n?":
            if self.root is _Root.BEFORE and not self.stack:
                # sersync: the declaration then held <head>, beside the comment or text
                # before it, and "First Tag should be 'head'" (xmlParser.cpp, parseString).
                raise _Refusal(token.start, "the XML declaration must come first, before any "
                                            "comment or text (sersync 2.5 refused it too)")
            self._blank(token)
            if not self._ignoring():
                self.fixes.append(_Fix(token.start, "XML declaration inside the file ignored"))
        elif not raw.endswith((b"?>", b"/>")):  # sersync: an element a </name> might close
            raise _Refusal(token.start, f'{_show(raw[:20])} is not closed by "?>"')
        elif self._ignoring():
            self._blank(token)
        elif _PI.fullmatch(raw):
            self.out.append(_cleaned(raw, token.start, "a <?...?>", self.utf8, b"?", self.fixes))
        else:
            self._blank(token)
            self.fixes.append(_Fix(token.start, "malformed <?...?> ignored"))

    def _on_start(self, token: _Token) -> None:
        tag = token.tag
        assert tag is not None
        written = self.data[tag.name.start : tag.name.end]
        top = not self.stack
        # sersync used the first <head> at the top; anything else there it kept and ignored.
        if self._ignoring() or (top and (self.root is not _Root.BEFORE
                                         or written.lower() != b"head")):
            self._outside(token, f"<{_show(written)}>", tag.start)
            if not tag.empty:
                self.stack.append(_Open(written, written, tag.start, True))
            return
        text, emitted, fixes = _start_bytes(self.data, tag, self.utf8)
        self.out.append(text)
        self.fixes.extend(fixes)
        if top:
            self.root = _Root.AFTER if tag.empty else _Root.INSIDE
        if not tag.empty:
            self.stack.append(_Open(written, emitted, tag.start, False))

    def _on_end(self, token: _Token) -> None:
        """An end tag closes the innermost open element, named in any case. sersync unwound
        an end tag that named an outer one, but then stopped at its "Warning: Unmatched end
        tag" (openFileHelper exits on any error): an element left open was refused."""
        tag = token.tag
        assert tag is not None
        written = self.data[tag.name.start : tag.name.end]
        named = [i for i, opened in enumerate(self.stack)
                 if opened.written.lower() == written.lower()]
        if not named:
            raise _Refusal(tag.start, f"</{_show(written)}> closes no open element "
                                      "(sersync 2.5 refused it too)")
        if named[-1] != len(self.stack) - 1:
            inner = self.stack[-1]
            raise _Refusal(inner.offset, f"<{_show(inner.written)}> is not closed before "
                                         f"</{_show(written)}> on line {self.lines.of(tag.start)}"
                                         " (sersync 2.5 refused it too)")
        opened = self.stack.pop()
        if opened.ignored:
            self._blank(token)
        else:
            self.out.append(_end_bytes(self.data, tag, opened.written, opened.emitted,
                                       self.fixes))
        if not self.stack and self.root is _Root.INSIDE:
            self.root = _Root.AFTER

    def _finish(self) -> None:
        if self.root is _Root.BEFORE:
            raise _Refusal(0, "no <head> element (sersync 2.5 refused it too: \"First Tag "
                              "should be 'head'\")")
        if self.stack:
            opened = self.stack[-1]
            ending = (f"the NUL byte on line {self.lines.of(len(self.data))}, where sersync "
                      "stopped reading," if self.rest else "the end of the file")
            raise _Refusal(opened.offset, f"<{_show(opened.written)}> is not closed before "
                                          f"{ending} (sersync 2.5 refused it too)")
        if self.rest:
            self.fixes.append(_Fix(len(self.data), "everything after a NUL byte ignored"))
            self.out.append(_newlines(self.rest))
