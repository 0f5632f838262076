"""The pitfalls pages' promises that hold without a build.

- Every fix cell (tagged ``fix``) runs on its own: a fresh namespace with only
  ``torch``, ``nn`` and ``F``, as a reader pasting it into a new session has.
- Every question is a ``##`` heading with a ``pit-*`` label, and the index's table
  links exactly those questions.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
INDEX = ROOT / "chapters" / "pitfalls.md"
PAGES = [
    ROOT / "chapters" / "pitfalls-training.md",
    ROOT / "chapters" / "pitfalls-deployment.md",
]
FIX_CELL = re.compile(r"```\{code-cell\} ipython3\n:tags: \[fix\]\n\n(.*?)\n```", re.S)
LABELLED_HEADING = re.compile(r"^\((pit-(?![\w-]*exercises)[\w-]+)\)=\n## ", re.M)


def _fix_cells() -> list[tuple[str, int, str]]:
    return [
        (page.stem, i, code)
        for page in PAGES
        for i, code in enumerate(FIX_CELL.findall(page.read_text()))
    ]


@pytest.mark.parametrize(
    "code",
    [c for _, _, c in _fix_cells()],
    ids=[f"{p}-{i}" for p, i, _ in _fix_cells()],
)
def test_fix_cell_runs_on_its_own(code, capsys):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fix that warns would print to stderr
        exec(code, {"torch": torch, "nn": nn, "F": F, "__name__": "fix"})  # noqa: S102


def test_every_question_has_a_fix_cell_or_none_needed():
    fixes = {p: len(FIX_CELL.findall(p.read_text())) for p in PAGES}
    questions = {p: len(LABELLED_HEADING.findall(p.read_text())) for p in PAGES}
    # "BatchNorm before or after the activation?" needs no fix; the decay groups
    # are one fix cell; every other question shows its plain-PyTorch fix in code.
    assert sum(fixes.values()) >= sum(questions.values()) - 2, (fixes, questions)


def test_every_heading_of_the_pitfalls_pages_has_a_label():
    for page in [INDEX, *PAGES]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no code
        headings = re.findall(r"^(#{1,3}) (.+)$", text, re.M)
        labelled = re.findall(r"^\(([\w-]+)\)=\n#{1,3} ", text, re.M)
        assert len(labelled) == len(headings), f"{page.name}: a heading without a label"


def test_index_table_links_every_question_once():
    linked = re.findall(r"<(pit-[\w-]+)>`", INDEX.read_text())
    asked = [
        label for page in PAGES for label in LABELLED_HEADING.findall(page.read_text())
    ]
    assert len(asked) >= 20
    assert sorted(linked) == sorted(asked)
    glued = re.search(r"index_labels = \[(.*?)\]", INDEX.read_text(), re.S).group(1)
    assert sorted(f"pit-{s}" for s in re.findall(r'"([\w-]+)"', glued)) == sorted(asked)


def test_label_anchors_puts_the_label_before_the_slug():
    from booksite import load_ext
    from docutils.core import publish_doctree
    from docutils.nodes import section

    ext = load_ext("label_anchors")
    doc = publish_doctree(
        ".. _pit-one:\n\nA batch of one\n==============\n\ntext\n\n"
        "Unlabelled\n==========\n\ntext\n",
        settings_overrides={"report_level": 5},
    )
    first, second = doc.findall(section)
    assert first["ids"][0] == "a-batch-of-one"  # docutils: the slug first
    assert ext.label_first(first, doc) and first["ids"] == ["pit-one", "a-batch-of-one"]
    assert not ext.label_first(second, doc) and second["ids"] == ["unlabelled"]


def test_old_links_to_the_index_are_sent_to_the_right_page():
    """The twelve questions of the one-page version: chapters/pitfalls.html#pit-one
    redirects to the page that now holds pit-one."""
    moved = dict(re.findall(r'"(pit-[\w-]+)": "([\w-]+)\.html"', INDEX.read_text()))
    old = ["one", "eval", "nograd", "freeze", "order", "dropout", "accum", "keras"]
    old += ["bias", "leak", "decay", "half"]
    assert sorted(moved) == sorted(f"pit-{q}" for q in old)
    for label, page in moved.items():
        labels = LABELLED_HEADING.findall(
            (ROOT / "chapters" / f"{page}.md").read_text()
        )
        assert label in labels, f"{label} is not on {page}"
