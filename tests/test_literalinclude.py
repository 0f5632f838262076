"""Listings that drop a docstring by line numbers must drop exactly the docstring.

A chapter may show a function without its docstring with ``:pyobject:`` and
``:lines: 1-3,17-``. Those numbers count lines, so a longer signature or docstring
would silently show half a docstring or cut the code. This test reads each such
listing the way Sphinx does and compares it with the function's own source minus
its docstring, found with ``ast``.
"""

import ast
import re
from pathlib import Path

import pytest
from sphinx.config import Config
from sphinx.directives.code import LiteralIncludeReader

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"```\{literalinclude\} (\S+)\n((?::[\w-]+:.*\n)+)```")


def _listings():
    for page in sorted((ROOT / "chapters").glob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text()):
            options = dict(re.findall(r":([\w-]+): ?(.*)", match.group(2)))
            if "pyobject" in options and "lines" in options:
                source = (page.parent / match.group(1)).resolve()
                yield pytest.param(
                    source, options, id=f"{page.stem}:{options['pyobject']}"
                )


def _without_docstring(source: Path, name: str) -> str:
    """The function ``name`` in ``source``, signature and body, docstring dropped."""
    lines = source.read_text().splitlines(keepends=True)
    tree = ast.parse("".join(lines))
    node = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name
    )
    doc = node.body[0]
    assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant), name
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    kept = lines[start - 1 : doc.lineno - 1] + lines[doc.end_lineno : node.end_lineno]
    return "".join(kept)


def test_there_are_listings_to_check():
    assert any(True for _ in _listings())


@pytest.mark.parametrize(("source", "options"), list(_listings()))
def test_listing_is_signature_and_body_without_docstring(source, options):
    config = Config({"source_encoding": "utf-8-sig"})
    config.init_values()
    reader = LiteralIncludeReader(str(source), dict(options), config)
    shown, _ = reader.read()
    assert shown == _without_docstring(source, options["pyobject"])
