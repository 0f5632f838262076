"""Serve MathJax from the built site itself, so that equations render offline.

Sphinx loads MathJax from a CDN by default; with no network every equation stays raw
LaTeX. This extension copies MathJax 3 from the ``django-static-mathjax`` package on
PyPI (pinned in requirements.txt; its ``mathjax`` module holds a copy of MathJax's
``es5`` build and nothing else) into ``<html>/mathjax/`` and points ``mathjax_path``
there.

The files go next to ``_static/``, not into the book's ``_static/`` source folder:
Jupyter Book adds a ``<script>`` for every ``.js`` file it finds there to every page.
Sphinx resolves a relative ``mathjax_path`` against ``_static/``, hence the ``../``.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

OUTPUT_DIR = "mathjax"
# Sphinx's default component: TeX and MathML in, HTML (CommonHTML) out.
COMPONENT = "tex-mml-chtml.js"
MATHJAX_PATH = f"../{OUTPUT_DIR}/{COMPONENT}"


def mathjax_source() -> Path:
    """Return the folder of the installed MathJax ``es5`` build.

    Raises
    ------
    ExtensionError
        If django-static-mathjax is not installed or does not hold MathJax 3.
    """
    try:
        root = Path(str(importlib.resources.files("mathjax"))) / "static" / "mathjax"
    except ModuleNotFoundError as err:
        raise ExtensionError(
            "offline_mathjax needs the django-static-mathjax package (see "
            "requirements.txt); the module 'mathjax' is not installed"
        ) from err
    es5 = root / "es5"
    if not (es5 / COMPONENT).is_file():
        raise ExtensionError(
            f"offline_mathjax expected MathJax 3's {COMPONENT} in {es5}, found none"
        )
    return es5


def _skip_other_components(folder: str, names: list[str]) -> list[str]:
    """Leave out the combined components that the site does not load (~13 MB)."""
    if Path(folder).name != "es5":
        return []
    return [n for n in names if n.endswith(".js") and n != COMPONENT]


def copy_mathjax(outdir: Path) -> Path:
    """Copy MathJax (its component, the files it loads lazily, its licence) to outdir.

    Returns the folder written, ``outdir / OUTPUT_DIR``.
    """
    source = mathjax_source()
    target = Path(outdir) / OUTPUT_DIR
    shutil.copytree(source, target, ignore=_skip_other_components, dirs_exist_ok=True)
    shutil.copy2(source.parent / "LICENSE", target / "LICENSE")
    return target


def _set_mathjax_path(app: Sphinx, config: Config) -> None:
    mathjax_source()  # fail at start-up, not after every page is executed
    config.mathjax_path = MATHJAX_PATH


def _copy_on_html_build(app: Sphinx) -> None:
    if app.builder.format == "html":
        copy_mathjax(Path(app.outdir))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _set_mathjax_path)
    app.connect("builder-inited", _copy_on_html_build)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
