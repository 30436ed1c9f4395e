"""confxml.xml as lxml elements, and its errors: reading the tree (repaired first when only
sersync's lenient parser took it), finding elements and attributes case-insensitively as
sersync did, and the one-line message naming file:line, element, attribute and value.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, TypeVar, Union, cast, overload

from lxml import etree

from sersyncpy import convert, xmlrepair
from sersyncpy.errors import ConfigError

T = TypeVar("T")
D = TypeVar("D")
F = TypeVar("F", bound=Callable[..., object])

Element = etree._Element


# --- errors -------------------------------------------------------------------------------


class Invalid(Exception):
    """A problem at one element (and attribute); the caller adds the file name (message())."""

    def __init__(self, element: Element, attribute: Optional[str], problem: str):
        super().__init__(problem)
        self.element = element
        self.attribute = attribute
        self.problem = problem


def message(source: str, exc: Invalid) -> str:
    line = exc.element.sourceline or 0
    return f"{source}:{line}: {_describe(exc.element, exc.attribute)}: {one_line(exc.problem)}"


def doubts(repairs: list[xmlrepair.Repair]) -> str:
    """For an error in a repaired file: the repairs that may have caused it (a value that
    lost its closing quote keeps the opening one, as sersync kept it)."""
    doubtful = [one for one in repairs if one.doubtful]
    if not doubtful:
        return ""
    return (f" (after repairing malformed XML as sersync 2.5 read it: "
            f"{xmlrepair.summary(doubtful)})")


def _describe(element: Element, attribute: Optional[str]) -> str:
    found = _attribute(element, attribute) if attribute else None
    if found is None:
        return f"<{element.tag}>"
    name, value = found
    return f'<{element.tag} {name}="{_escape(value)}">'


def _escape(value: str) -> str:
    """The value as it could be written in the file, on one line."""
    return "".join(
        "&quot;" if char == '"' else char if char.isprintable() else f"&#{ord(char)};"
        for char in value
    )


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def guarded(function: F) -> F:
    """Turn any unexpected exception of a section reader into an error at its element."""

    @functools.wraps(function)
    def wrapper(element: Element, *args: object) -> object:
        try:
            return function(element, *args)
        except Invalid:
            raise
        except Exception as exc:
            raise Invalid(element, None, f"unexpected {type(exc).__name__}: {exc}") from exc

    return cast(F, wrapper)


# --- XML access ---------------------------------------------------------------------------
# sersync's XML parser matches tag and attribute names case-insensitively; so do we.


_REQUIRED = object()


def tree(text: bytes, source: str) -> tuple[Element, list[xmlrepair.Repair]]:
    """The root element, and what was repaired: a file lxml refuses is read as sersync 2.5's
    lenient parser read it (xmlrepair), on the same lines; a valid file is never touched."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    try:
        root = _strict(text)
        return root, xmlrepair.utf8_values(root)
    except etree.XMLSyntaxError as exc:
        refused = exc
    except Exception as exc:
        raise ConfigError(f"{source}:1: malformed XML: {one_line(exc)}") from None
    try:
        repaired, repairs = xmlrepair.repair(text)
    except xmlrepair.Unrepairable as exc:
        raise ConfigError(f"{source}:{exc.line}: malformed XML: {exc.problem}") from None
    if repairs:
        try:
            root = _strict(repaired)
            return root, repairs + xmlrepair.utf8_values(root)
        except etree.XMLSyntaxError as exc:  # what the repair does not cover: lxml's words
            refused = exc
    line = refused.lineno or 1
    raise ConfigError(f"{source}:{line}: malformed XML: {one_line(refused.msg)}") from None


def _strict(text: bytes) -> Element:
    # Bytes, so that the sample's encoding="ISO-8859-1" declaration is honoured; comments
    # removed, so that "the i-th child of <filter>" means the i-th element, as in sersync.
    parser = etree.XMLParser(
        remove_comments=True, remove_pis=True, resolve_entities=False, no_network=True
    )
    return etree.fromstring(text, parser)


def elements(parent: Optional[Element]) -> list[Element]:
    return [] if parent is None else [child for child in parent if isinstance(child.tag, str)]


def children(parent: Optional[Element], tag: str) -> list[Element]:
    return [child for child in elements(parent) if child.tag.lower() == tag.lower()]


def child(parent: Optional[Element], tag: str) -> Optional[Element]:
    found = children(parent, tag)
    return found[0] if found else None


def required_child(parent: Element, tag: str) -> Element:
    found = child(parent, tag)
    if found is None:
        raise Invalid(parent, None, f"missing required element <{tag}>")
    return found


def _attribute(element: Element, name: str) -> Optional[tuple[str, str]]:
    """(name as written, value), or None."""
    for key, value in element.attrib.items():
        if key.lower() == name.lower():
            return key, value
    return None


@overload
def value(element: Optional[Element], name: str, converter: Callable[[str], T]) -> T: ...


@overload
def value(element: Optional[Element], name: str, converter: Callable[[str], T],
          default: D) -> Union[T, D]: ...


def value(element: Optional[Element], name: str, converter: Callable[[str], T],
          default: object = _REQUIRED) -> object:
    """Attribute `name` of `element` through `converter`; `default` if either is absent."""
    if element is None:
        return None if default is _REQUIRED else default
    found = _attribute(element, name)
    if found is None:
        if default is _REQUIRED:
            raise Invalid(element, None, f"missing required attribute {name}")
        return default
    if xmlrepair.NOT_TEXT in found[1]:  # bytes sersync passed on as they were; we cannot
        raise Invalid(element, found[0], _NOT_TEXT_PROBLEM)
    try:
        return converter(found[1])
    except Exception as exc:
        problem = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise Invalid(element, found[0], problem) from exc


_NOT_TEXT_PROBLEM = (f"holds bytes that are not UTF-8 (shown as {xmlrepair.NOT_TEXT}): save the "
                     "file in UTF-8, or declare its encoding")


def start(element: Optional[Element]) -> bool:
    return value(element, "start", convert.boolean, False)


def when_started(element: Optional[Element], name: str,
                 converter: Callable[[str], T]) -> Optional[T]:
    return value(element, name, converter) if start(element) else None
