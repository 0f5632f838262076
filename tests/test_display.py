"""bnbook.derive.display: the displayed equations read back into SymPy and proved.

The book's build runs :func:`bnbook.derive.display.check` on every SymPy-backed
display (``_ext/proof_ledger.py``); these tests mutate one display in a copy of the
page's text and see the check, and the extension's warning, fail. No book build.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bnbook.derive import display

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import proof_ledger  # noqa: E402  (the book's extension, from _ext/)

PAGES = ("gradients", "normalization")
OTHER_PAGES = (
    "appendix-speed", "appendix-statistics", "normalization-family",
    "pitfalls-training", "regularization",
)  # fmt: skip


@pytest.fixture(scope="module")
def blocks() -> dict[str, str]:
    found: dict[str, str] = {}
    for page in PAGES + OTHER_PAGES:
        found |= display.math_blocks((ROOT / "chapters" / f"{page}.md").read_text())
    return found


def test_math_blocks_finds_labelled_displays_only():
    page = "```{math}\n:label: eq-a\na = b\n```\n\n```{math}\nc = d\n```\n"
    assert display.math_blocks(page) == {"eq-a": "a = b"}


def test_relations_split_the_staged_pass_into_its_four_lines(blocks):
    found = display.relations(blocks["eq-staged"])
    assert [lhs for lhs, _, _ in found] == [
        r"\psi_{i}",
        r"\tau",
        r"\kappa",
        r"\omega_{i}",
    ]


def test_relations_split_a_chain_pairwise():
    assert display.relations(r"a &= b \\ &= c") == [("a", "=", "b"), ("b", "=", "c")]


def test_relations_read_a_first_line_without_equals_and_a_final_inequality():
    latex = r"&a + b \\ &\quad = c < 1,"
    assert display.relations(latex) == [("a + b", "=", "c"), ("c", "<", "1")]


def test_wrap_functions_keeps_a_log_to_its_fraction():
    assert display.prepare(r"\log\frac{a}{b} - 1") == r"(\log(\frac{a}{b})) - 1"


def test_staged_display_is_proved(blocks):
    assert display.check("eq-staged", blocks["eq-staged"]) == []


@pytest.mark.parametrize(
    ("label", "old", "new"),
    [
        ("eq-staged", r"-\frac{1}{2s^3}", r"-\frac{1}{s^3}"),  # a power slip
        ("eq-compact", r"\hat{x}_i \sum_{k} g_k\hat{x}_k", r"\hat{x}_i \sum_{k} g_k"),
        ("eq-eval-backward", r"\frac{\partial \ell}{\partial \beta} = \sum_i g_i",
         r"\frac{\partial \ell}{\partial \beta} = -\sum_i g_i"),  # a sign slip
        ("eq-norm-eval-affine", r"\beta - a", r"\beta + a"),  # via a definition
        ("eq-norm-sigmoid-slope", r"{4\cosh", r"{2\cosh"),
        ("eq-speed-shift", r"\Big)^2", r"\Big)"),
        ("eq-speed-dysum", r"(\mu - K)", r"(K - \mu)"),
        ("eq-family-backward", r"\hat{x}_i\, \overline{h\,\hat{x}}",
         r"\hat{x}_i\, \overline{h}"),
        ("eq-rms-backward", r"\sqrt{\overline{x^2} + \epsilon}", r"\overline{x^2}"),
        ("eq-reg-var-mean", r"\frac{\sigma^2}{m}", r"\frac{\sigma^2}{m - 1}"),
        ("eq-reg-fpc", r"\frac{N-m}{N-1}", r"\frac{N-m}{N}"),
        ("eq-md-merge", r"n_k (\mu_k - \mu)^2", r"(\mu_k - \mu)^2"),
        ("eq-md-chan", r"{n_a + n_b}", r"{n_a + n_b - 1}"),
        ("eq-cs-kl-gauss", r"- \frac{1}{2}", r"+ \frac{1}{2}"),
        ("eq-cs-max-weight", r"{2(\sigma_0^2 - \sigma_1^2)}",
         r"{2(\sigma_1^2 - \sigma_0^2)}"),
        ("eq-pit-variance-shift", r"{1-p}", r"{1+p}"),
        ("eq-pit-variance-shift", r"< 1", r"< \frac{1}{2}"),  # the inequality
    ],
)  # fmt: skip
def test_check_rejects_a_mutated_display(blocks, label, old, new):
    assert old in blocks[label]
    problems = display.check(label, blocks[label].replace(old, new, 1))
    assert problems and all("is not proved" in p for p in problems)
    assert len({p.split(" is not proved")[0] for p in problems}) == 1  # one relation


def test_a_size_specific_slip_fails_at_the_other_sizes(blocks):
    """Var(sigma_B^2) = 2 sigma^4 / m^2 is right at m = 2 only: the readings at the
    other proved sizes reject it, one problem each."""
    latex = blocks["eq-reg-chi2"].replace(r"\frac{2(m-1)}{m^2}", r"\frac{2}{m^2}", 1)
    problems = display.check("eq-reg-chi2", latex)
    assert [p.rsplit("(", 1)[1] for p in problems] == ["m = 3)", "m = 4)", "m = 5)"]


def test_a_mutated_page_copy_fails_its_check(tmp_path):
    """The page's own text, one display changed in a copy: the check names it."""
    page = (ROOT / "chapters" / "gradients.md").read_text()
    copy = tmp_path / "gradients.md"
    copy.write_text(page.replace(r"\sum_{i=1}^{m} g_i .", r"m\,g_i .", 1))
    latex = display.math_blocks(copy.read_text())["eq-grad-gamma-beta"]
    problems = display.check("eq-grad-gamma-beta", latex)
    assert len(problems) == 1 and "\\rho = m g_{i} is not proved" in problems[0]


@pytest.mark.parametrize(
    ("label", "page", "old", "new"),
    [
        ("eq-staged", "gradients", r"{2s^3}", r"{2s^2}"),
        ("eq-md-chan", "appendix-statistics", r"{n_a + n_b}", r"{n_a}"),
    ],
)
def test_extension_warns_for_a_mutated_display(
    blocks, monkeypatch, label, page, old, new
):
    """What fails the build under -W: the extension's warning, with the label."""
    warnings: list[str] = []
    monkeypatch.setattr(
        proof_ledger.logger, "warning", lambda msg, **kw: warnings.append(msg)
    )
    mutated = blocks[label].replace(old, new, 1)
    assert mutated != blocks[label]

    class Env:
        proof_displays = {label: (f"chapters/{page}", mutated)}

    found = {label: [{"kind": "sympy-all-m", "detail": "", "docname": "x"}]}
    proof_ledger.check_displays(Env(), found)
    assert len(warnings) == 1 and f"'{label}' is not what was proved" in warnings[0]
    warnings.clear()
    found = {label: [{"kind": "torch", "detail": "", "docname": "x"}]}
    proof_ledger.check_displays(Env(), found)  # no SymPy record: nothing to compare
    assert warnings == []


def test_every_sympy_backed_equation_is_read_or_by_hand(blocks):
    """Each label any page records with a SymPy kind has a reading or a reason."""
    recorded = set()
    for path in sorted((ROOT / "chapters").glob("*.md")):
        text = path.read_text()
        for call in re.findall(r"prove_and_record\((.*?)\)", text, re.S):
            recorded |= set(re.findall(r'"(eq-[\w-]+)"', call))
        recorded |= set(re.findall(r'verified\("(eq-[\w-]+)", "sympy', text))
    assert recorded and recorded <= set(blocks)
    assert recorded <= set(display.READINGS) | set(display.BY_HAND)
    assert not set(display.READINGS) & set(display.BY_HAND)


def test_check_unknown_label_raises():
    with pytest.raises(ValueError, match="no reading for 'eq-none'"):
        display.check("eq-none", "a = b")


def test_prepare_rejects_an_unknown_partial():
    with pytest.raises(
        ValueError, match=r"no symbol for the partial derivative by 'w'"
    ):
        display.prepare(r"\frac{\partial \ell}{\partial w}")
