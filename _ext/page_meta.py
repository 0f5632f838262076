"""The site's address for sphinxext-opengraph's ``og:url``, from the repository setting.

A link to a page, pasted into a forum or a chat, shows a preview built from the page's
``og:`` tags and its ``<meta name="description">``. sphinxext-opengraph writes them
(configured in ``_config.yml``); it needs the address where the site is published,
``ogp_site_url``. The book names its repository in one place, ``repository.url``
(``_ext/repository.py``), and the Pages workflow publishes the site of
``https://github.com/OWNER/NAME`` at ``https://OWNER.github.io/NAME/``. This
extension derives that address, so that ``make repository URL=...`` moves it too.
An ``ogp_site_url`` set in ``_config.yml`` wins.
"""

from __future__ import annotations

import re
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config

GITHUB = re.compile(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?")


def pages_url(repository_url: str) -> str:
    """The GitHub Pages address of a repository's site, ending in a slash.

    Raises
    ------
    ValueError
        If repository_url is not ``https://github.com/OWNER/NAME``.
    """
    match = GITHUB.fullmatch(repository_url)
    if match is None:
        raise ValueError(
            "expected a repository address https://github.com/OWNER/NAME, "
            f"got {repository_url!r}"
        )
    owner, name = match.groups()
    return f"https://{owner.lower()}.github.io/{name}/"


def _set_site_url(app: Sphinx, config: Config) -> None:
    if getattr(config, "ogp_site_url", None):
        return
    repository = (config.html_theme_options or {}).get("repository_url", "")
    if repository:
        config.ogp_site_url = pages_url(repository)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _set_site_url)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
