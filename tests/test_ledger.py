"""The proof ledger: bnbook.derive.ledger's records and the book's extension.

The unit tests cover the transport (glue keys) and the extension's collection logic;
one small Jupyter Book build checks the whole path: a page whose equation has a
check, a page whose equation has none (the build must name it), and the table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bnbook.derive import ledger
from bnbook.derive.ledger import KINDS, key, parse_key, verified

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import proof_ledger  # noqa: E402  (the book's extension, from _ext/)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_key_parse_key_round_trip(kind):
    record = parse_key(key("eq-x", kind, "m = 3 only"))
    assert record == {"label": "eq-x", "kind": kind, "detail": "m = 3 only"}


@pytest.mark.parametrize(
    "glue_key", ["fig-x", "ledger:eq-x", "ledger:eq-x|proof|", "ledger:|torch|"]
)
def test_parse_key_ignores_other_keys(glue_key):
    assert parse_key(glue_key) is None


def test_verified_records_once_without_a_kernel(monkeypatch):
    monkeypatch.setattr(ledger, "_records", [])
    assert verified("eq-a", "torch") is None
    verified("eq-a", "torch")
    verified("eq-a", "cited", "ioffe2015batch")
    assert ledger.records() == [
        {"label": "eq-a", "kind": "torch", "detail": ""},
        {"label": "eq-a", "kind": "cited", "detail": "ioffe2015batch"},
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("eq-a", "proof"), "kind must be one of"),
        (("", "torch"), "label must be a non-empty str"),
        (("eq|a", "torch"), "label must be a non-empty str without"),
        ((3, "torch"), "label must be a non-empty str"),
        (("eq-a", "torch", 3), "detail must be a str, got int"),
    ],
)
def test_verified_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        verified(*args)


def test_collect_records_groups_by_label():
    meta = {
        "b": {"glue": [key("eq-1", "torch"), "fig-1"]},
        "a": {"glue": [key("eq-1", "sympy-all-m", "all m"), key("eq-2", "numeric")]},
        "c": {},
    }
    found = proof_ledger.collect_records(meta)
    assert found == {
        "eq-1": [
            {"kind": "sympy-all-m", "detail": "all m", "docname": "a"},
            {"kind": "torch", "detail": "", "docname": "b"},
        ],
        "eq-2": [{"kind": "numeric", "detail": "", "docname": "a"}],
    }


def test_missing_and_unknown_name_label_and_page():
    equations = {"eq-1": ("a", 1), "eq-3": ("c", 2)}
    found = {"eq-1": [{"docname": "a"}], "eq-typo": [{"docname": "b"}]}
    missing, unknown = proof_ledger.missing_and_unknown(equations, found)
    assert missing == [("eq-3", "c")] and unknown == [("eq-typo", "b")]


def test_describe_uses_the_kinds_words():
    assert proof_ledger.describe({"kind": "torch", "detail": ""}) == KINDS["torch"]
    cited = {"kind": "cited", "detail": "santurkar2018how"}
    assert proof_ledger.describe(cited) == "cited from santurkar2018how"
    instance = {"kind": "sympy-instance", "detail": "m = 3"}
    assert proof_ledger.describe(instance) == f"{KINDS['sympy-instance']}: m = 3"


_PAGE = """---
jupytext:
  text_representation:
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
# {title}

```{{math}}
:label: {label}
a = a
```

```{{code-cell}} ipython3
from bnbook.derive.ledger import verified
{call}
```
"""


def _tiny_book(tmp: Path) -> Path:
    book = tmp / "book"
    book.mkdir()
    (book / "_config.yml").write_text(
        "title: t\nexecute:\n  execute_notebooks: force\n"
        f"sphinx:\n  local_extensions:\n    proof_ledger: {ROOT / '_ext'}\n"
    )
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: index\nchapters:\n  - file: good\n  - file: bad\n"
        "  - file: ledger\n"
    )
    (book / "index.md").write_text("# Index\n")
    call = 'verified("eq-good", "sympy-all-m", "every m");'
    (book / "good.md").write_text(
        _PAGE.format(title="Good", label="eq-good", call=call)
    )
    (book / "bad.md").write_text(_PAGE.format(title="Bad", label="eq-bad", call="1;"))
    (book / "ledger.md").write_text("# Ledger\n\n```{proof-ledger}\n```\n")
    return book


@pytest.mark.book
def test_ledger_build_fails_for_an_unchecked_equation_and_lists_the_rest(tmp_path):
    book = _tiny_book(tmp_path)
    jb = str(Path(sys.executable).parent / "jupyter-book")
    run = subprocess.run(
        [jb, "build", str(book), "-W", "--keep-going"],
        capture_output=True,
        text=True,
    )
    log = run.stdout + run.stderr
    assert run.returncode != 0
    assert "equation 'eq-bad' on page 'bad' has no check" in log
    assert "eq-good" not in log.split("proof ledger:")[-1].split("\n")[0]
    html = (book / "_build" / "html" / "ledger.html").read_text()
    text = re.sub(r"<[^>]+>", "", html)
    assert "eq-good (1)" in text and "SymPy, all sizes: every m" in text
    # the number the page shows (the book numbers equations across pages)
    bad_page = (book / "_build" / "html" / "bad.html").read_text()
    assert 'class="eqno">(2)' in bad_page
    assert "eq-bad (2)" in text and "NO CHECK" in text
    assert "Display checked" in text and "(no SymPy record)" in text
    assert 'href="good.html#equation-eq-good"' in html
    # Give the bad page its check; an incremental rebuild passes and updates the table.
    call = 'verified("eq-bad", "torch");'
    (book / "bad.md").write_text(_PAGE.format(title="Bad", label="eq-bad", call=call))
    again = subprocess.run(
        [jb, "build", str(book), "-W"], capture_output=True, text=True
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    html = (book / "_build" / "html" / "ledger.html").read_text()
    text = re.sub(r"<[^>]+>", "", html)
    assert "NO CHECK" not in text and KINDS["torch"] in text


_ROW = re.compile(
    r'href="([^"#]+)#equation-([\w-]+)"><code[^>]*><span class="pre">\2</span>\s*'
    r'<span class="pre">(\([^)<]*\))</span>'
)


def ledger_rows(site: Path) -> list[tuple[str, str, str]]:
    """``(page, label, number)`` of every row of the built ledger page."""
    return _ROW.findall((site / "ledger.html").read_text())


def page_number(site: Path, page: str, label: str) -> str | None:
    """The number the page itself shows beside the equation ``label``."""
    html = (site / page).read_text()
    number = r'<span class="eqno">(\([^)<]*\))'
    found = re.search(rf'id="equation-{label}">\s*{number}', html)
    return found.group(1) if found else None


def test_ledger_numbers_are_the_numbers_on_the_pages(site):
    rows = ledger_rows(site)
    assert len(rows) >= 50  # every labelled equation of the book has a row
    wrong = [
        (label, number, page_number(site, page, label))
        for page, label, number in rows
        if page_number(site, page, label) != number
    ]
    assert wrong == []
