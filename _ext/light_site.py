"""Keep the built site light: what a page loads and what the site holds.

After an HTML build this extension

- removes Font Awesome's JavaScript (1.5 MB on every page): the theme's stylesheet
  already draws every icon with Font Awesome's web fonts, which the site serves;
- loads Sphinx's search index and search code on the search page only (the search
  box on every other page sends the reader there);
- deletes the source maps (``*.map``) and the comments that point to them: readers
  never need them, and they were a sixth of the site;
- deletes the theme's translation catalogues (``_static/locales``): they serve the
  build, no browser asks for them;
- cuts Font Awesome down to the icons the site shows (``icon_subset``).

MathJax's unused parts (speech rules, SVG output) are never copied: see
``offline_mathjax``. tests/test_site_weight.py measures the result.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from icon_subset import subset_icons
from sphinx.application import Sphinx

FONTAWESOME_JS = re.compile(
    r'[ \t]*<script[^>]*\bsrc="[^"]*_static/scripts/fontawesome\.js[^"]*"[^>]*>'
    r"</script>\n?"
)
SEARCH_SCRIPTS = re.compile(
    r'[ \t]*<script[^>]*\bsrc="[^"]*(?:_static/searchtools\.js|'
    r'_static/language_data\.js|searchindex\.js)(?:\?[^"]*)?"[^>]*></script>\n?'
)
SOURCE_MAP_COMMENT = re.compile(
    r"\n?(?://[#@] sourceMappingURL=[^\n]*|/\*[#@] sourceMappingURL=[^*]*\*/)\s*$"
)
SEARCH_PAGE = "search.html"


def lighten_page(html: str, is_search_page: bool) -> str:
    """Return a page's HTML without Font Awesome's script (and, unless it is the
    search page, without the search scripts)."""
    html = FONTAWESOME_JS.sub("", html)
    if not is_search_page:
        html = SEARCH_SCRIPTS.sub("", html)
    return html


def drop_source_maps(static: Path) -> list[Path]:
    """Delete every ``*.map`` under static and the comments that point to them.

    Returns the maps deleted.
    """
    maps = sorted(static.rglob("*.map"))
    for path in maps:
        path.unlink()
    for path in [*static.rglob("*.js"), *static.rglob("*.css")]:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        lighter = SOURCE_MAP_COMMENT.sub("", text)
        if lighter != text:
            path.write_text(lighter, encoding="utf-8", errors="surrogateescape")
    return maps


def lighten_site(outdir: Path) -> None:
    """Apply every step above to a built HTML site in place."""
    for page in outdir.rglob("*.html"):
        if page.relative_to(outdir).parts[0] in {"_static", "_sources"}:
            continue
        html = page.read_text(encoding="utf-8")
        lighter = lighten_page(html, page.relative_to(outdir).as_posix() == SEARCH_PAGE)
        if lighter != html:
            page.write_text(lighter, encoding="utf-8")
    static = outdir / "_static"
    for path in static.glob("scripts/fontawesome.js*"):
        path.unlink()
    shutil.rmtree(static / "locales", ignore_errors=True)
    drop_source_maps(static)
    subset_icons(outdir)


def _on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        lighten_site(Path(app.outdir))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("build-finished", _on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
