"""Give each page every ``<script>`` once.

sphinx-thebe adds its inline configuration (``const THEBE_JS_URL = ...``) with
``app.add_js_file(None, body=...)`` after the HTML builder has started. Sphinx 7.4
then puts it on every page twice, once as ``None`` and once as ``''``, and the second
``const`` is an uncaught SyntaxError in the reader's console on every page. This
extension drops such repeats just before each page is written.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _key(script: Any) -> tuple:
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {})
    return str(filename), tuple(sorted(attributes.items()))


def unique_scripts(scripts: list) -> list:
    """Return scripts in order, without those whose file, body and attributes repeat."""
    seen: set[tuple] = set()
    kept = []
    for script in scripts:
        if _key(script) not in seen:
            seen.add(_key(script))
            kept.append(script)
    return kept


def _drop_repeats(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(list(context["script_files"]))


def setup(app: Sphinx) -> dict[str, Any]:
    # After every extension that adds scripts to a page (the default priority is 500).
    app.connect("html-page-context", _drop_repeats, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
