"""The pitfalls pages on the built site: stable anchors, search, link previews.

- Every heading of the three pitfalls pages is anchored at its label: the section's
  id, its ¶ link and its entry in the page's contents give ``#pit-one``, never the
  slug of the title (``_ext/label_anchors.py``). A heading without a label fails.
- The index's table links every question, and each link's fragment exists.
- Sphinx's search index finds every question by its title (anchored at its label)
  and the pages by the words people type: error text and names.
- Every page carries ``og:title``, ``og:description`` and ``<meta name="description">``
  for link previews (sphinxext-opengraph, offline).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from booksite import ROOT, parse_html, toc_pages

INDEX = "chapters/pitfalls"
QUESTION_PAGES = ["chapters/pitfalls-training", "chapters/pitfalls-deployment"]
PIT_PAGES = [INDEX, *QUESTION_PAGES]
# What readers type, with the page that must come up.
KEYWORDS = {
    "chapters/pitfalls-training": [
        "expected",
        "channel",
        "ASPP",
        "FrozenBatchNorm2d",
        "GroupNorm",
        "NaN",
        "GradScaler",
        "autocast",
        "checkpoint",
        "num_batches_tracked",
        "accumulation",
        "dropout",
        "decay",
        "GAN",
        "discriminator",
        "generator",
        "vmap",
        "functorch",
        "Opacus",
    ],
    "chapters/pitfalls-deployment": [
        "eval",
        "update_bn",
        "no_grad",
        "track_running_stats",
        "running_mean",
        "LSTM",
        "Keras",
        "half",
        "SyncBatchNorm",
        "ONNX",
        "TorchScript",
        "export",
        "fuse_conv_bn_eval",
        "fuse_modules",
        "ResNet",
    ],
}


def _labels(page: str) -> set[str]:
    """The labels written right before a heading in the page's source."""
    text = (ROOT / f"{page}.md").read_text()
    return set(re.findall(r"^\(([\w-]+)\)=\n#{1,6} ", text, re.M))


def _search_index(site: Path) -> dict:
    text = (site / "searchindex.js").read_text(encoding="utf-8")
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


@pytest.mark.parametrize("page", PIT_PAGES)
def test_pitfalls_headings_are_anchored_at_their_labels(site, page):
    soup = parse_html(site / f"{page}.html")
    labels = _labels(page)
    headings = soup.select(
        "article.bd-article section > h1, article.bd-article section > h2"
    )
    assert len(headings) == len(labels) >= 1
    for heading in headings:
        anchor = heading.find_parent("section")["id"]
        text = heading.get_text(" ", strip=True)[:60]
        assert anchor in labels, f"{page}: {text!r} is anchored at the slug #{anchor}"
        assert heading.select_one("a.headerlink")["href"] == f"#{anchor}", text


@pytest.mark.parametrize("page", QUESTION_PAGES)
def test_pitfalls_contents_entries_give_the_labels(site, page):
    soup = parse_html(site / f"{page}.html")
    entries = [a["href"] for a in soup.select(".page-toc a.nav-link[href^='#']")]
    questions = {label for label in _labels(page) if label.startswith("pit-")}
    assert entries, f"{page}: no contents entries found"
    assert {e.removeprefix("#") for e in entries} >= questions
    assert all(e.removeprefix("#") in _labels(page) for e in entries), entries


def test_pitfalls_index_links_every_question(site):
    links = parse_html(site / f"{INDEX}.html").select("table.pit-index tbody a[href]")
    targets = {}
    for a in links:
        path, _, fragment = a["href"].partition("#")
        targets[fragment] = path
    questions = {
        q
        for p in QUESTION_PAGES
        for q in _labels(p)
        if q.startswith("pit-") and not q.endswith("exercises")
    }
    assert set(targets) == questions and len(questions) >= 20
    for fragment, path in targets.items():
        ids = {s.get("id") for s in parse_html(site / "chapters" / path).select("[id]")}
        assert fragment in ids, f"{path}#{fragment} does not exist"


def test_search_finds_each_question_by_its_title(site):
    index = _search_index(site)
    docs = index["docnames"]
    anchored = {
        (docs[doc], anchor)
        for places in index["alltitles"].values()
        for doc, anchor in places
    }
    for page in QUESTION_PAGES:
        for label in _labels(page) - {page.removeprefix("chapters/")}:  # not the h1
            assert (page, label) in anchored, f"search has no title at {page}#{label}"


def test_search_finds_the_pages_by_the_words_people_type(site):
    from sphinx.search.en import SearchEnglish

    stem = SearchEnglish({}).stem
    index = _search_index(site)
    docs = index["docnames"]
    for page, words in KEYWORDS.items():
        for word in words:
            key = stem(word.lower())
            found = []
            for table in ("terms", "titleterms"):
                hits = index[table].get(key, [])
                found += [hits] if isinstance(hits, int) else hits
            assert docs.index(page) in found, f"searching {word!r} misses {page}"


@pytest.mark.parametrize("page", toc_pages())
def test_page_has_a_link_preview(site, page):
    head = parse_html(site / f"{page}.html").head
    for prop in ("og:title", "og:description", "og:url"):
        tag = head.find("meta", attrs={"property": prop})
        assert tag and tag["content"].strip(), f"{page}: no {prop}"
    description = head.find("meta", attrs={"name": "description"})
    assert description and len(description["content"]) > 40, f"{page}: no description"
    assert not head.find("meta", attrs={"property": "og:image"})  # no social cards
