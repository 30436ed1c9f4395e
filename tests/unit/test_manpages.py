"""man/sersyncpy.8 and man/sersyncpy-confxml.5: they render without a warning (mandoc's lint
and groff through man-db, both installed by scripts/setup --test), and they do not go stale:
every flag of the command line, every SERSYNCPY_* variable, and every element and attribute
of confxml.xml and of the config readers is in them."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

import sersyncpy
from sersyncpy import cli, demo, status

REPO = Path(__file__).resolve().parents[2]
PAGE8 = REPO / "man" / "sersyncpy.8"
PAGE5 = REPO / "man" / "sersyncpy-confxml.5"
PAGES = (PAGE8, PAGE5)
MANDOC = shutil.which("mandoc")
MAN = shutil.which("man")


def text(page: Path) -> str:
    """The page's source with roff's escapes for '-', '\\' and the zero-width joiners undone,
    which is what a reader sees of the names checked here."""
    source = page.read_text(encoding="utf-8")
    for escape, plain in (("\\-", "-"), ("\\&", ""), ("\\:", ""), ("\\e", "\\"), ("\\c", "")):
        source = source.replace(escape, plain)
    return source


def has_word(source: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", source) is not None


@pytest.mark.skipif(MANDOC is None, reason="mandoc is not installed (scripts/setup --test)")
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_mandoc_lint_finds_nothing(page: Path):
    run = subprocess.run([MANDOC, "-T", "lint", "-W", "warning", str(page)],
                         capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


@pytest.mark.skipif(MAN is None, reason="man-db is not installed (scripts/setup --test)")
@pytest.mark.parametrize("width", ["80", "60"])
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_man_renders_without_warnings(page: Path, width: str):
    env = {**os.environ, "MANWIDTH": width, "MANPAGER": "cat", "PAGER": "cat",
           "MAN_KEEP_FORMATTING": "", "LC_ALL": "C.UTF-8"}
    run = subprocess.run([MAN, "--warnings", "-l", str(page)], capture_output=True, text=True,
                         env=env, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert "NAME" in run.stdout and "SEE ALSO" in run.stdout


def options(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text))


def test_every_flag_is_in_the_command_page(capsys):
    page = text(PAGE8)
    flags = {flag for action in cli.build_parser()._actions for flag in action.option_strings}
    for main in (lambda: status.main(["-h"]), lambda: demo.main(["-h"], "")):
        with pytest.raises(SystemExit):
            main()
        flags |= options(capsys.readouterr().out)
    assert {"-o", "-t", "-r", "-n", "-d", "-m", "--max-lag", "--seconds"} <= flags
    assert sorted(flag for flag in flags if not has_word(page, flag)) == []


def test_every_environment_variable_is_in_the_command_page():
    names = set()
    for path in (REPO / "sersyncpy").rglob("*.py"):
        names |= set(re.findall(r"SERSYNCPY_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8")))
    assert "SERSYNCPY_WATCHER" in names
    page = text(PAGE8)
    assert sorted(name for name in names if not has_word(page, name)) == []


def sample_names() -> tuple[set[str], set[str]]:
    """(elements, attributes) of the documented sample confxml.xml, its comments aside."""
    parser = etree.XMLParser(remove_comments=True, resolve_entities=False, no_network=True)
    root = etree.parse(str(REPO / "confxml.xml"), parser).getroot()
    tags, attributes = set(), set()
    for element in root.iter():
        if isinstance(element.tag, str):
            tags.add(element.tag)
            attributes |= set(element.attrib)
    return tags, attributes


def reader_names() -> tuple[set[str], set[str]]:
    """(elements, attributes) the config readers ask for by name: child(..., "tag"),
    value(..., "attribute", ...) and the like, sersyncpy's additions included."""
    tags, attributes = set(), set()
    for path in (REPO / "sersyncpy" / "config.py", REPO / "sersyncpy" / "plugins" / "settings.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)):
                continue
            if node.func.id in ("child", "children", "required_child"):
                tags.add(node.args[1].value)
            elif node.func.id in ("value", "when_started"):
                attributes.add(node.args[1].value)
    return tags, attributes


def test_every_element_and_attribute_is_in_the_config_page():
    page = text(PAGE5)
    sample_tags, sample_attributes = sample_names()
    code_tags, code_attributes = reader_names()
    assert {"failLog", "latency", "watcher"} <= code_tags
    assert {"budgetMs", "maxPending", "inFullSync", "retrySeconds"} <= code_attributes
    tags = sample_tags | code_tags
    missing = sorted(f"<{tag}>" for tag in tags if f"<{tag}" not in page)
    missing += sorted(name for name in sample_attributes | code_attributes
                      if not has_word(page, name))
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_name_the_current_version(page: Path):
    assert f'"sersyncpy {sersyncpy.__version__}"' in page.read_text(encoding="utf-8")
