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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

OUTPUT_DIR = "mathjax"
# MathJax's startup component, which loads the components below (and ``core``, which
# they all need). Sphinx's default, the combined tex-mml-chtml.js, also holds MathML
# input, which the book never uses, and the context menu (426 KB), whose speech and
# braille settings would need the speech-rule engine left out here. Without them a page
# loads 760 KB of MathJax instead of 1,170 KB; screen readers still get each formula
# as MathML (assistive-mml).
COMPONENT = "startup.js"
LOAD = ["input/tex", "output/chtml", "a11y/assistive-mml"]
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


# What the site loads from MathJax: the components above, CommonHTML's TeX font data
# and web fonts, and the TeX extensions that TeX input loads on demand. Left out: the
# combined components, the speech-rule engine and its data (3.9 MB), the SVG output
# and its fonts, MathML input, the menu and the Node adaptor.
KEEP = (
    COMPONENT,
    "core.js",
    *(f"{component}.js" for component in LOAD),
    "input/tex/extensions",
    "output/chtml/fonts/tex.js",
    "output/chtml/fonts/woff-v2",
)


def _kept(relative: str) -> bool:
    """Whether a path (relative to ``es5``) is, holds or lies inside a kept one."""
    return any(
        relative == keep
        or keep.startswith(relative + "/")
        or relative.startswith(keep + "/")
        for keep in KEEP
    )


def _skip_unused(source: Path) -> Callable[[str, list[str]], list[str]]:
    def ignore(folder: str, names: list[str]) -> list[str]:
        base = Path(folder).relative_to(source).as_posix()
        prefix = "" if base == "." else base + "/"
        return [n for n in names if not _kept(prefix + n)]

    return ignore


def copy_mathjax(outdir: Path) -> Path:
    """Copy the MathJax that the site uses (see ``KEEP``) and its licence to outdir.

    Returns the folder written, ``outdir / OUTPUT_DIR``.
    """
    source = mathjax_source()
    target = Path(outdir) / OUTPUT_DIR
    shutil.rmtree(target, ignore_errors=True)  # no file left from an earlier build
    shutil.copytree(source, target, ignore=_skip_unused(source), dirs_exist_ok=True)
    shutil.copy2(source.parent / "LICENSE", target / "LICENSE")
    return target


def _set_mathjax_path(app: Sphinx, config: Config) -> None:
    mathjax_source()  # fail at start-up, not after every page is executed
    config.mathjax_path = MATHJAX_PATH


def _load_components(app: Sphinx) -> None:
    """Tell MathJax's startup what to load (after myst-parser set its options)."""
    config = dict(app.config.mathjax3_config or {})
    config["loader"] = {**config.get("loader", {}), "load": LOAD}
    app.config.mathjax3_config = config


def _copy_on_html_build(app: Sphinx) -> None:
    if app.builder.format == "html":
        copy_mathjax(Path(app.outdir))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _set_mathjax_path)
    app.connect("builder-inited", _copy_on_html_build)
    app.connect("builder-inited", _load_components, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
