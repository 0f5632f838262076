"""Font Awesome cut down to the icons the site shows.

pydata-sphinx-theme ships Font Awesome's three web fonts (270 KB that every page
loads) and a rule for each of its 1,900 icon classes in its stylesheet (86 KB). The
site shows about twenty icons. After a build, :func:`subset_icons` finds them (the
``fa-*`` classes in the site's pages and scripts, and the icon characters that the
stylesheets use directly), keeps only their rules, and replaces each font by a WOFF
subset of those characters, made with fontTools (a dependency of matplotlib) from
the theme's TrueType originals.
"""

from __future__ import annotations

import re
from pathlib import Path

THEME_CSS = "styles/pydata-sphinx-theme.css"
WEBFONTS = "vendor/fontawesome/webfonts"
# One icon rule of the minified stylesheet: its class names and its character.
ICON_RULE = re.compile(r'((?:\.fa-[\w-]+:(?:before|after),?)+)\{content:"([^"]*)"\}')
CLASS = re.compile(r"\bfa-[a-z0-9-]+")
CSS_CHAR = re.compile(r'"(\\f[0-9a-fA-F]{3,4}|[\uf000-\uf8ff])"')
FONT_FACE = re.compile(r"src:url\(\.\./" + WEBFONTS + r"/([\w-]+)\.woff2\)[^;}]*")


def _char(escaped: str) -> int:
    return int(escaped[1:], 16) if escaped.startswith("\\") else ord(escaped)


def used_characters(static: Path, texts: list[str]) -> tuple[set[str], set[int]]:
    """The icon classes used in texts, and every icon character the site needs."""
    css = (static / THEME_CSS).read_text(encoding="utf-8")
    classes = {name for text in texts for name in CLASS.findall(text)}
    chars = set()
    for selectors, char in ICON_RULE.findall(css):
        if {s.split(":")[0][1:] for s in selectors.split(",")} & classes:
            chars.add(_char(char))
    # Characters the stylesheets use themselves (admonition icons and the like).
    for sheet in static.rglob("*.css"):
        rest = ICON_RULE.sub("", sheet.read_text(encoding="utf-8", errors="replace"))
        chars |= {_char(c) for c in CSS_CHAR.findall(rest)}
    return classes, chars


def trim_rules(css: str, classes: set[str]) -> str:
    """The stylesheet without the rules of icons that no page uses."""

    def keep(match: re.Match) -> str:
        names = {s.split(":")[0][1:] for s in match.group(1).split(",")}
        return match.group(0) if names & classes else ""

    return ICON_RULE.sub(keep, css)


def subset_fonts(webfonts: Path, chars: set[int]) -> list[Path]:
    """Replace each font by a WOFF subset of chars; return the fonts written."""
    from fontTools import subset

    written = []
    for original in sorted(webfonts.glob("*.ttf")):
        options = subset.Options()
        options.flavor = "woff"
        options.layout_features = ["*"]
        font = subset.load_font(str(original), options)
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=sorted(chars))
        subsetter.subset(font)
        target = original.with_suffix(".woff")
        subset.save_font(font, str(target), options)
        written.append(target)
    for old in [*webfonts.glob("*.ttf"), *webfonts.glob("*.woff2")]:
        old.unlink()
    return written


def subset_icons(outdir: Path) -> set[str]:
    """Cut Font Awesome down to the icons of the built site; return their classes."""
    static = outdir / "_static"
    if not (static / WEBFONTS).is_dir() or not list((static / WEBFONTS).glob("*.ttf")):
        return set()  # done by an earlier run over the same build
    pages = [p for p in outdir.rglob("*.html")] + list(static.rglob("*.js"))
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in pages]
    classes, chars = used_characters(static, texts)
    subset_fonts(static / WEBFONTS, chars)
    sheet = static / THEME_CSS
    css = trim_rules(sheet.read_text(encoding="utf-8"), classes)
    css = FONT_FACE.sub(
        lambda m: f'src:url(../{WEBFONTS}/{m.group(1)}.woff) format("woff")', css
    )
    sheet.write_text(css, encoding="utf-8")
    return classes
