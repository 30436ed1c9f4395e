"""Rewriting one part of the file as lxml takes it (names, attributes, values, entities,
comments, bytes XML cannot hold), each change noted as a Fix. Cutting the file into parts is
xmltokens.py's; the order of parts and what is open, xmlrepair.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sersyncpy.xmltokens import Attribute, Kind, Lexeme, Refusal, Tag, Token, show

# Stands in a value for bytes that are not text in the file's encoding; config refuses a
# value holding it when the value is read (sersync passed those bytes on as they were).
NOT_TEXT = "\ufffd"
_NOT_TEXT_REFERENCE = b"&#65533;"


@dataclass(frozen=True)
class Fix:
    """One change at a byte offset of the file; xmlrepair reports it as a Repair at a line."""

    offset: int
    phrase: str
    doubtful: bool = False


def newlines(raw: bytes) -> bytes:
    """What is left of text taken out: its line breaks, so that later lines keep their number."""
    return b"\n" * raw.count(b"\n")


# An XML name; without ":", which lxml would want declared as a namespace prefix.
_NAME = re.compile(rb"[A-Za-z_\x80-\xff][-A-Za-z0-9._\x80-\xff]*")
_NOT_NAME = re.compile(rb"[^-A-Za-z0-9._\x80-\xff]")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # XML 1.0 cannot hold them at all
_HYPHEN = re.compile(rb"-(?=-|\Z)")  # each "-" of a "--", and a last "-" (before "-->")
_AMPERSAND = re.compile(
    rb"&(?:(?P<number>#[0-9]+;|#[xX][0-9A-Fa-f]+;)|(?P<name>amp|lt|gt|quot|apos);)?", re.I
)
_ENTITIES = "&amp; &lt; &gt; &quot; &apos; &#N;"


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


def cleaned(chunk: bytes, offset: int, where: str, utf8: bool, replacement: bytes,
            fixes: list[Fix]) -> bytes:
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
    fixes.append(Fix(offset + at, f"{what} in {where}"))
    chunk = _CONTROL.sub(replacement, chunk)
    if utf8:  # "replace" never takes in an ASCII byte, so no line break is lost
        chunk = chunk.decode("utf-8", "replace").encode().replace(NOT_TEXT.encode(), replacement)
    return chunk


def entities(raw: bytes, offset: int, where: str, fixes: list[Fix]) -> bytes:
    """raw with its entities as lxml wants them. sersync matched entity names in any case
    (&AMP;), and stopped at any other "&" (its fromXMLString: "Unknown character entity")."""

    def one(match: re.Match) -> bytes:
        written = match.group(0)
        if match.group("number") is None and match.group("name") is None:
            raise Refusal(offset + match.start(), f'"&" in {where} is not one of {_ENTITIES} '
                                                  "(sersync 2.5 refused it too)")
        wanted = written.lower() if match.group("name") else written.replace(b"&#X", b"&#x")
        if wanted != written:
            fixes.append(Fix(offset + match.start(), f"{show(written)} read as {show(wanted)}"))
        return wanted

    return _AMPERSAND.sub(one, raw)


def text_bytes(raw: bytes, offset: int, utf8: bool, fixes: list[Fix]) -> bytes:
    text = entities(raw, offset, "text", fixes)
    if b"]]>" in text:
        fixes.append(Fix(offset + text.index(b"]]>"), '"]]>" in text'))
        text = text.replace(b"]]>", b"]]&gt;")
    return cleaned(text, offset, "text", utf8, b"?", fixes)


def comment_bytes(data: bytes, token: Token, utf8: bool, fixes: list[Fix]) -> bytes:
    start = token.start + 4
    body = data[start : token.end - 3]
    double = body.find(b"--")
    if double != -1 or body.endswith(b"-"):
        at = double if double != -1 else len(body) - 1
        fixes.append(Fix(start + at, '"--" inside a comment'))
        body = _HYPHEN.sub(b" ", body)
    return b"<!--" + cleaned(body, start, "a comment", utf8, b"?", fixes) + b"-->"


def _value(data: bytes, lexeme: Lexeme, name: str, utf8: bool,
           fixes: list[Fix]) -> bytes:
    quoted = lexeme.kind is Kind.QUOTED
    start = lexeme.start + quoted
    where = f"the value of {name}"
    text = entities(data[start : lexeme.end - quoted], start, where, fixes)
    text = cleaned(text, start, where, utf8, _NOT_TEXT_REFERENCE, fixes)
    if quoted:
        quote = data[lexeme.start : lexeme.start + 1]
        return quote + text + quote
    if text[:1] in (b'"', b"'"):  # sersync kept the quote that found no partner
        fixes.append(Fix(lexeme.start, f"value of {name} has no closing quote", True))
    else:
        fixes.append(Fix(lexeme.start, f"unquoted value of {name}"))
    if b'"' in text and b"'" not in text:
        return b"'" + text + b"'"
    return b'"' + text.replace(b'"', b"&quot;") + b'"'


def _attribute(data: bytes, attribute: Attribute, previous: int, seen: set[bytes],
               utf8: bool, fixes: list[Fix]) -> bytes:
    name_at = attribute.name
    end = (attribute.value or name_at).end
    name = data[name_at.start : name_at.end]
    shown = show(name)
    if name in seen or not _is_name(name, utf8):
        phrase = (f"{shown} given twice (the first is read, as by sersync)" if name in seen
                  else f"attribute {shown} is not a name (ignored)")
        fixes.append(Fix(name_at.start, phrase))
        return newlines(data[previous:end])
    seen.add(name)
    before = data[previous : name_at.start]
    if not before:
        fixes.append(Fix(name_at.start, f"no space before {shown}"))
        before = b" "
    if attribute.value is None:  # sersync: a NULL value (a crash where it read one)
        fixes.append(Fix(name_at.start, f'no value for {shown} (read as "")'))
        return before + name + b'=""'
    middle = data[name_at.end : attribute.value.start]  # "=" and white space
    return before + name + middle + _value(data, attribute.value, shown, utf8, fixes)


def start_bytes(data: bytes, tag: Tag, utf8: bool) -> tuple[bytes, bytes, list[Fix]]:
    """(the start tag as lxml takes it, the element name in it, what was repaired)."""
    written = data[tag.name.start : tag.name.end]
    emitted = _element_name(written, utf8)
    fixes: list[Fix] = []
    if emitted != written:
        phrase = f"<{show(written)}> is not an element name (read as <{show(emitted)}>)"
        fixes.append(Fix(tag.start, phrase))
    gap = data[tag.start + 1 : tag.name.start]
    if gap:
        fixes.append(Fix(tag.start, 'space after "<"'))
    pieces = [b"<", emitted, gap]
    previous, seen = tag.name.end, set()
    for attribute in tag.attributes:
        pieces.append(_attribute(data, attribute, previous, seen, utf8, fixes))
        previous = (attribute.value or attribute.name).end
    pieces.append(data[previous : tag.end])
    if not fixes:
        return data[tag.start : tag.end], written, []
    return b"".join(pieces), emitted, fixes


def end_bytes(data: bytes, tag: Tag, written_open: bytes, emitted: bytes,
              fixes: list[Fix]) -> bytes:
    written = data[tag.name.start : tag.name.end]
    gap = data[tag.start + 2 : tag.name.start]
    if not gap and written == emitted:
        return data[tag.start : tag.end]
    if gap:
        fixes.append(Fix(tag.start, 'space after "</"'))
    if written != written_open:  # sersync compared names whatever their case
        fixes.append(Fix(tag.start, f"</{show(written)}> closes <{show(written_open)}>"))
    return b"</" + emitted + gap + data[tag.name.end : tag.end]
