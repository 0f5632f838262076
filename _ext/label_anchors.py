"""Headings anchored at their labels: the ¶ link and the page contents hand out
``#pit-one``, not the slug of the title.

A MyST label ``(pit-one)=`` before a heading becomes one more id of the section, after
the id that docutils makes from the title. Sphinx writes the first id into the
heading's ¶ link and into the page's contents ("on this page"), so readers copying a
link got the slug, which changes whenever the title is reworded.

This transform runs while each page is read, after docutils has moved the label onto
its section (``PropagateTargets``, priority 260) and before Sphinx collects the page's
contents, and moves the section's explicit label to the front of its ids. The slug
stays as a second id, so links made from it keep working. A section with several
labels keeps the first one written.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform


def label_ids(section: nodes.section, document: nodes.document) -> list[str]:
    """The ids of ``section`` that come from explicit labels, in the order written."""
    found = []
    for name in section["names"]:
        node_id = document.nameids.get(name)
        if document.nametypes.get(name) and node_id in section["ids"]:
            found.append(node_id)
    return found


def label_first(section: nodes.section, document: nodes.document) -> bool:
    """Put the section's first explicit label first among its ids; True if moved."""
    labels = label_ids(section, document)
    if not labels or section["ids"][0] == labels[0]:
        return False
    section["ids"].remove(labels[0])
    section["ids"].insert(0, labels[0])
    return True


class LabelAnchors(SphinxTransform):
    """Every labelled section is anchored at its label."""

    default_priority = 700  # after PropagateTargets (260), before the page's contents

    def apply(self, **kwargs: Any) -> None:
        for section in self.document.findall(nodes.section):
            label_first(section, self.document)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_transform(LabelAnchors)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
