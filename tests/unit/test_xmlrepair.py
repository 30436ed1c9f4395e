"""Table tests of sersyncpy.xmlrepair: each malformed shape sersync 2.5's parser accepted, the
well-formed bytes it becomes (on the same lines) and the repairs named; each shape it refused.

Each verdict was checked against sersync's own parser (xmlParser.cpp of micate/sersync, built
into a harness that reads a file as Initialize::XmlParse did); the one exception is marked.
"""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from sersyncpy import config, xmlrepair
from sersyncpy.errors import ConfigError
from sersyncpy.xmlrepair import Repair, Unrepairable
from unit.test_config import SAMPLE

REPO_CONFXML = Path(__file__).resolve().parents[2] / "confxml.xml"
GBK = "中文注释".encode("gbk")  # b"\xd6\xd0\xce\xc4\xd7\xa2\xca\xcd": not UTF-8
# Each sequence that is not UTF-8 becomes one "?"; D7 A2 happens to be UTF-8 (U+05E2).
GBK_REPAIRED = b"????\xd7\xa2??"
NOT_UTF8 = "bytes that are not UTF-8"

# (input, output, [(line, phrase)]); the phrases marked doubtful are checked below.
ACCEPTED = {
    "unquoted value (an Ansible role's <timeout start=false>)": (
        b'<head>\n<timeout start=false time="100"/>\n</head>',
        b'<head>\n<timeout start="false" time="100"/>\n</head>',
        [(2, "unquoted value of start")],
    ),
    "unquoted values before > and />": (
        b"<head a=1>\n<b c=/x/y/>\n</head>",
        b'<head a="1">\n<b c="/x/y"/>\n</head>',
        [(1, "unquoted value of a"), (2, "unquoted value of c")],
    ),
    "unquoted value holding a double quote": (
        b'<head a=x"y/>',
        b"<head a='x\"y'/>",
        [(1, "unquoted value of a")],
    ),
    "attribute with no value": (
        b"<head><debug start/></head>",
        b'<head><debug start=""/></head>',
        [(1, 'no value for start (read as "")')],
    ),
    "no space between attributes": (
        b'<head><remote ip="a"name="b"/></head>',
        b'<head><remote ip="a" name="b"/></head>',
        [(1, "no space before name")],
    ),
    "duplicate attribute: sersync read the first": (
        b'<head><debug start="true" start="false"/></head>',
        b'<head><debug start="true"/></head>',
        [(1, "start given twice (the first is read, as by sersync)")],
    ),
    "attribute whose name is not a name": (
        b'<head 1x="y" a="b"/>',
        b'<head a="b"/>',
        [(1, "attribute 1x is not a name (ignored)")],
    ),
    "element whose name is not a name": (
        b"<head><1x/></head>",
        b"<head><_1x/></head>",
        [(1, "<1x> is not an element name (read as <_1x>)")],
    ),
    '"--" inside a comment': (
        b"<head><!-- a -- b --></head>",
        b"<head><!-- a  - b --></head>",
        [(1, '"--" inside a comment')],
    ),
    "comment ending in --->": (
        b"<head>\n<!-- a\n--->\n</head>",
        b"<head>\n<!-- a\n -->\n</head>",
        [(3, '"--" inside a comment')],
    ),
    "end tag in another case": (
        b'<head><Remote ip="a"></remote></head>',
        b'<head><Remote ip="a"></Remote></head>',
        [(1, "</remote> closes <Remote>")],
    ),
    "GBK comment under encoding=UTF-8": (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<head>\n<!-- ' + GBK + b" -->\n</head>",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<head>\n<!-- ' + GBK_REPAIRED + b" -->\n</head>",
        [(3, f"{NOT_UTF8} in a comment")],
    ),
    "GBK comments with no declaration, one phrase a comment": (
        b"<!-- " + GBK + b" -->\n<head>\n<!-- a\n" + GBK + b" -->\n</head>",
        b"<!-- " + GBK_REPAIRED + b" -->\n<head>\n<!-- a\n" + GBK_REPAIRED + b" -->\n</head>",
        [(1, f"{NOT_UTF8} in a comment"), (4, f"{NOT_UTF8} in a comment")],
    ),
    "GBK text between elements": (
        b"<head>" + GBK + b"</head>",
        b"<head>" + GBK_REPAIRED + b"</head>",
        [(1, f"{NOT_UTF8} in text")],
    ),
    "GBK value: marked, for config to refuse if it is read": (
        b'<head version="\xb0\xe6" name="more than 25 bytes"/>',
        b'<head version="&#65533;&#65533;" name="more than 25 bytes"/>',
        [(1, f"{NOT_UTF8} in the value of version")],
    ),
    "control character in a comment": (
        b"<head><!-- \x0c --></head>",
        b"<head><!-- ? --></head>",
        [(1, "control characters in a comment")],
    ),
    "text after </head>": (
        b"<head/>\ngarbage, more\n",
        b"<head/>\n\n",
        [(2, "text after </head> ignored")],
    ),
    "an element after </head>": (
        b"<head/>\n<other a=b>\n</other>\n",
        b"<head/>\n\n\n",
        [(2, "<other> after </head> ignored")],
    ),
    "a second <head>: sersync read the first": (
        b"<head/>\n<head><x/></head>\n",
        b"<head/>\n\n",
        [(2, "<head> after </head> ignored")],
    ),
    "text and an element before <head>": (
        b"junk\n<other/>\n<head/>",
        b"\n\n<head/>",
        [(1, "text before <head> ignored"), (2, "<other> before <head> ignored")],
    ),
    "white space after < and </": (
        b"<head>< a/>\n</ head >",
        b"<head><a />\n</head  >",
        [(1, 'space after "<"'), (2, 'space after "</"')],
    ),
    "entity in capitals": (
        b'<head a="x&AMP;y&#X41;"/>',
        b'<head a="x&amp;y&#x41;"/>',
        [(1, "&AMP; read as &amp;"), (1, "&#X41; read as &#x41;")],
    ),
    '"]]>" in text': (
        b"<head>a]]>b</head>",
        b"<head>a]]&gt;b</head>",
        [(1, '"]]>" in text')],
    ),
    "byte order mark": (
        b"\xef\xbb\xbf<head a=b/>",
        b'\xef\xbb\xbf<head a="b"/>',
        [(1, "unquoted value of a")],
    ),
    "CRLF line ends": (
        b"<head>\r\n<a b=c/>\r\n</head>\r\n",
        b'<head>\r\n<a b="c"/>\r\n</head>\r\n',
        [(2, "unquoted value of b")],
    ),
    "blank lines before the declaration": (
        b'\n\n<?xml version="1.0"?>\n<head/>',
        b'<?xml version="1.0"?>\n\n\n<head/>',
        [(3, "white space before the XML declaration")],
    ),
    'declaration closed by ">"': (
        b'<?xml version="1.0" encoding="UTF-8">\n<head/>',
        b'<?xml version="1.0" encoding="UTF-8"?>\n<head/>',
        [(1, "malformed XML declaration")],
    ),
    "declaration with unquoted values": (
        b"<?xml version=1.0 encoding=UTF-8?>\n<head/>",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<head/>',
        [(1, "malformed XML declaration")],
    ),
    "encoding lxml does not know: bytes as they are, as in sersync": (
        b'<?xml version="1.0" encoding="x-unknown"?>\n<head/>',
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<head/>',
        [(1, "unknown encoding x-unknown read as ISO-8859-1")],
    ),
    "value with no closing quote: sersync kept the quote": (
        b'<head>\n<auth passwordfile="/etc/p/>\n</head>',
        b"<head>\n<auth passwordfile='\"/etc/p'/>\n</head>",
        [(2, "value of passwordfile has no closing quote")],
    ),
    "NUL byte after </head>: sersync stopped reading there": (
        b"<head/>\n\x00<junk\n",
        b"<head/>\n\n",
        [(2, "everything after a NUL byte ignored")],
    ),
    "<?...> closed by />, as sersync closed it": (
        b"<head>\n<?ssh start=\"false\"/>\n</head>",
        b"<head>\n\n</head>",
        [(2, "malformed <?...?> ignored")],
    ),
    "processing instruction kept": (
        b"<?foo bar?><head a=b/>",
        b'<?foo bar?><head a="b"/>',
        [(1, "unquoted value of a")],
    ),
    "root element in capitals": (
        b"<HEAD><SERSYNC a=b></sersync></HEAD>",
        b'<HEAD><SERSYNC a="b"></SERSYNC></HEAD>',
        [(1, "unquoted value of a"), (1, "</sersync> closes <SERSYNC>")],
    ),
}

DOUBTFUL = {"value of passwordfile has no closing quote"}

# Well-formed files: repair() gives them back byte for byte, repairing nothing.
VALID = {
    "sersync's stock sample": SAMPLE,
    "the repository's confxml.xml": REPO_CONFXML.read_bytes(),
    "commented-out element": b'<head>\n<!--<remote ip="a" name="b"/>-->\n</head>\n',
    "single-quoted values": b"<head a='1' b='x\"y'/>",
    "GBK comment under ISO-8859-1": (
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<head><!-- ' + GBK + b" --></head>"
    ),
    "BOM, CRLF, PI, DOCTYPE, CDATA": (
        b"\xef\xbb\xbf<?xml version='1.0'?>\r\n<!DOCTYPE head>\r\n<?pi x?>"
        b"<head><![CDATA[a<b]]>&amp;&#233;</head>\r\n<!-- after -->\r\n"
    ),
}

# (input, line, what the message says)
REFUSED = {
    'bare "&" in a value': (
        b'<head>\n<deshost url="http://h/x?a=1&b=2"/>\n</head>',
        2,
        '"&" in the value of url is not one of &amp; &lt; &gt; &quot; &apos; &#N;',
    ),
    "unknown entity": (b'<head a="&nbsp;"/>', 1, '"&" in the value of a is not one of'),
    'bare "&" in text': (b"<head>\na & b</head>", 2, '"&" in text is not one of'),
    '"<" in a value': (
        b'<head>\n<exclude expression="a<b"/>\n</head>',
        2,
        '<exclude> is not closed before the next "<" (sersync 2.5 refused it too; a value '
        'cannot hold "<": write &lt;)',
    ),
    "tag not closed before the next one": (
        b'<head>\n<a b="1"\n<c/>\n</head>',
        2,
        '<a> is not closed before the next "<"',
    ),
    "comment never closed": (b"<head>\n<!-- x\n</head>", 2, "comment never closed by -->"),
    "CDATA never closed": (b"<head><![CDATA[ x", 1, "CDATA section never closed by ]]>"),
    "comment before the declaration": (
        b'<!-- x -->\n<?xml version="1.0"?>\n<head/>',
        2,
        "the XML declaration must come first",
    ),
    "end tag that closes nothing": (
        b"<head>\n</foo>\n</head>",
        2,
        "</foo> closes no open element",
    ),
    "no <head>": (b"<config a=b/>", 1, "no <head> element"),
    "empty file": (b"", 1, "no <head> element"),
    "no element name": (b"<head>\n< >\n</head>", 2, '"<" without an element name'),
    "end tag with more than a name": (
        b"<head></head x>",
        1,
        '</head is not closed by ">" right after its name',
    ),
    "end tag cut off": (b"<head></head", 1, '</head is not closed by ">" right after its name'),
    "value without a name": (b'<head "x"/>', 1, '"x" in <head> has no attribute name'),
    '"=" without a name': (b"<head =x/>", 1, '"=" in <head> has no attribute name'),
    "no value after =": (b"<head a=/>", 1, "no value after a= in <head>"),
    # The exception: sersync took this one (a "<?" swallowed the rest of its file).
    "<? cut off": (b"<head><?pi", 1, '"<?" is never closed by "?>"'),
    "<?...> inside <head>": (b"<head>\n<?pi a='1'>\n</head>", 2, "<?pi a='1'> is not closed by"),
    # sersync's openFileHelper stopped at its parser's "Warning: Unmatched end tag".
    "element left open": (
        b'<head><filter>\n<exclude expression="a">\n<exclude expression="b"/>\n</filter></head>',
        2,
        "<exclude> is not closed before </filter> on line 4 (sersync 2.5 refused it too)",
    ),
    "element never closed": (
        b"<head>\n<sersync>\n",
        2,
        "<sersync> is not closed before the end of the file",
    ),
    "tag cut off": (b'<head>\n<debug start="true"', 2, "<debug> is cut off by the end of the file"),
    "a second </head>": (b"<head></head>\n</head>\n", 2, "</head> closes no open element"),
    "NUL byte inside <head>": (
        b"<head>\n<a/>\x00</head>",
        1,
        "<head> is not closed before the NUL byte on line 2, where sersync stopped reading,",
    ),
    'bare "&" in text after </head>': (b"<head/>\na & b", 2, '"&" in text is not one of'),
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_shape_becomes_well_formed_on_the_same_lines(name: str) -> None:
    data, expected, repairs = ACCEPTED[name]
    out, found = xmlrepair.repair(data)
    assert out == expected
    assert [(r.line, r.phrase) for r in found] == repairs
    assert {r.phrase for r in found if r.doubtful} == {p for _, p in repairs} & DOUBTFUL
    assert out.count(b"\n") == data.count(b"\n")
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    etree.fromstring(out, parser)  # well-formed now


@pytest.mark.parametrize("name", VALID)
def test_a_valid_file_comes_back_unchanged(name: str) -> None:
    data = VALID[name]
    etree.fromstring(data)
    assert xmlrepair.repair(data) == (data, [])


@pytest.mark.parametrize("name", REFUSED)
def test_refused_shape_names_its_line(name: str) -> None:
    data, line, fragment = REFUSED[name]
    with pytest.raises(Unrepairable) as caught:
        xmlrepair.repair(data)
    assert caught.value.line == line
    assert fragment in caught.value.problem
    assert "\n" not in caught.value.problem


def test_utf16_is_left_to_lxml() -> None:
    data = '<?xml version="1.0" encoding="UTF-16"?><head a=b/>'.encode("utf-16")
    assert xmlrepair.repair(data) == (data, [])


def test_summary_groups_a_phrase_and_orders_by_line() -> None:
    repairs = [
        Repair(40, '"--" inside a comment'),
        Repair(3, "bytes that are not UTF-8 in a comment"),
        Repair(12, "unquoted value of start"),
        Repair(7, "bytes that are not UTF-8 in a comment"),
        Repair(7, "bytes that are not UTF-8 in a comment"),
    ]
    assert xmlrepair.summary(repairs) == (
        "lines 3, 7: bytes that are not UTF-8 in a comment; line 12: unquoted value of start; "
        'line 40: "--" inside a comment'
    )


@pytest.mark.parametrize(
    ("data", "expected", "repairs"),
    [
        # sersync passed a value's bytes on as they were: UTF-8 ones name a UTF-8 path.
        (
            '<?xml version="1.0" encoding="ISO-8859-1"?>\n<head>\n<a watch="/data/网站"/></head>'
            .encode(),
            "/data/网站",
            [(3, "value of watch read as UTF-8, not ISO-8859-1")],
        ),
        # Bytes that are not UTF-8 keep the declared meaning.
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><head><a watch="caf\xe9"/></head>',
         "caf\u00e9", []),
        (b'<?xml version="1.0" encoding="UTF-8"?><head><a watch="caf\xc3\xa9"/></head>',
         "caf\u00e9", []),
        ("<?xml version='1.0' encoding='GBK'?><head><a watch='网站'/></head>".encode("gbk"),
         "网站", []),
    ],
)
def test_utf8_values_read_a_legacy_file_as_sersync_did(data: bytes, expected: str,
                                                        repairs: list) -> None:
    root = etree.fromstring(data)
    found = xmlrepair.utf8_values(root)
    assert root[0].get("watch") == expected
    assert [(r.line, r.phrase) for r in found] == repairs


# Edits to sersync's sample: bytes that mean something to a parser, put anywhere.
_PIECES = [b"<", b">", b'"', b"'", b"=", b"/", b" ", b"-", b"&", b"!", b"?", b"\n", b"\r", b"a",
           b"]]>", b"<!--", b"-->", b"</", b"/>", b"&AMP;", b"<![CDATA[", b"\xd6", b"\x0c",
           b"\x00", b"<x>", b"</x>"]
_edit = st.tuples(st.integers(0, len(SAMPLE)), st.integers(0, 3), st.sampled_from(_PIECES))


@settings(max_examples=300, deadline=None)
@given(st.lists(_edit, min_size=1, max_size=4), st.booleans())
def test_any_edit_is_repaired_on_the_same_lines_or_refused_with_a_line(edits, as_utf8):
    data = SAMPLE.replace(b"ISO-8859-1", b"UTF-8") if as_utf8 else SAMPLE
    for at, cut, piece in edits:
        data = data[:at] + piece + data[at + cut:]
    try:
        out, repairs = xmlrepair.repair(data)
    except Unrepairable as exc:
        assert 1 <= exc.line <= data.count(b"\n") + 1 and "\n" not in exc.problem
    else:
        assert out.count(b"\n") == data.count(b"\n")
        if repairs:
            etree.fromstring(out, etree.XMLParser(resolve_entities=False, no_network=True))
        else:
            assert out == data
    try:
        config.parse(data, "x.xml")
    except ConfigError as exc:
        assert str(exc).startswith("x.xml:") and "\n" not in str(exc)
