"""The speed pages on the built site, with numba installed or not.

numba is an optional extra (``bnlib-batchnorm[fast]``). With it, the speed pages time
bnlib's numba backend beside the others. Without it, they still build: the numba
column is left out of the main table, and each page says in words that numba is not
installed and how to install it. These tests check whichever form this environment
should give, so ``make test`` checks both when run with and without numba.
"""

from __future__ import annotations

import importlib.util

import pytest
from booksite import article, parse_html

HAS_NUMBA = importlib.util.find_spec("numba") is not None
NOT_INSTALLED = "numba is not installed on the machine that built this page"
INSTALL = 'pip install "bnlib-batchnorm[fast]"'


def _text(site, page: str) -> str:
    text = article(parse_html(site / f"{page}.html")).get_text(" ")
    return " ".join(text.replace("\u2019", "'").split())  # straight apostrophes


def _table_headers(site, page: str) -> list[list[str]]:
    soup = article(parse_html(site / f"{page}.html"))
    return [
        [th.get_text(" ", strip=True) for th in table.select("thead th")]
        for table in soup.select("table")
    ]


def test_speed_table_has_a_numba_column_only_with_numba(site):
    (cases,) = [h for h in _table_headers(site, "chapters/speed") if "textbook" in h]
    assert cases[1:] == (
        ["textbook", "bnlib", "numba", "PyTorch"]
        if HAS_NUMBA
        else ["textbook", "bnlib", "PyTorch"]
    )


@pytest.mark.parametrize("page", ["chapters/speed", "chapters/appendix-speed"])
def test_speed_pages_say_whether_numba_ran(site, page):
    text = _text(site, page)
    if HAS_NUMBA:
        assert NOT_INSTALLED not in text
    else:
        assert NOT_INSTALLED in text and INSTALL in text


def test_speed_answer_and_machine_name_numba_as_the_run_had_it(site):
    text = _text(site, "chapters/speed")
    assert ("bnlib's optional numba version takes" in text) is HAS_NUMBA
    if HAS_NUMBA:
        import numba

        assert f"and numba {numba.__version__}" in text
    else:
        assert "and no numba (not installed)" in text


def test_appendix_numba_check_ran_only_with_numba(site):
    text = _text(site, "chapters/appendix-speed")
    assert ("A cached start took" in text) is HAS_NUMBA
    soup = parse_html(site / "chapters/appendix-speed.html")
    caption = soup.select_one("#fig-appendix-speed-lead figcaption").get_text(" ")
    assert (NOT_INSTALLED in " ".join(caption.split())) is not HAS_NUMBA
