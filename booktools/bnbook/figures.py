"""The book's one matplotlib style, and the phone check that every figure carries.

A chapter calls :func:`use_book_style` once, in its hidden set-up cell. From then on
every figure the notebook shows is saved as a PNG that records, in its text chunks,
the smallest font on it (points) and the resolution it was saved at (dots per inch).
``tests/test_site_figures.py`` reads those records from the built site and computes
how tall the smallest text is on a 390 px phone, where the column is
:data:`PHONE_COLUMN_PX` CSS pixels wide and a wider image is scaled down to fit.

The rule that follows, for a figure ``w`` inches wide once saved: its smallest text,
``f`` points, shows at ``f * PHONE_COLUMN_PX / (72 * w)`` CSS pixels, which must be at
least :data:`MIN_PHONE_TEXT_PX`. With the style's sizes (10.5 pt at the smallest) a
figure may be up to about 6.2 inches wide; :data:`MAX_WIDTH_IN` leaves a margin.
"""

from __future__ import annotations

from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = [
    "BOOK_RC",
    "MAX_WIDTH_IN",
    "MIN_PHONE_TEXT_PX",
    "PHONE_COLUMN_PX",
    "min_text_pt",
    "phone_text_px",
    "use_book_style",
]

PHONE_COLUMN_PX = 342  # the article column of a 390 px phone, in CSS pixels
MIN_PHONE_TEXT_PX = 8.0  # the smallest legible text there, in CSS pixels
MAX_WIDTH_IN = 6.0  # the widest figure, in inches, at the style's font sizes
KEY_MIN_PT = "bnbook:min_text_pt"
KEY_DPI = "bnbook:dpi"

BOOK_RC: dict[str, Any] = {
    "figure.figsize": (MAX_WIDTH_IN, 3.4),
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 11.5,
    "axes.titlesize": 11.5,
    "axes.labelsize": 11.5,
    "xtick.labelsize": 10.5,
    "ytick.labelsize": 10.5,
    "legend.fontsize": 10.5,
    "legend.title_fontsize": 10.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    # One colour per arm, the same across the book: plain, BatchNorm, then the rest.
    "axes.prop_cycle": mpl.cycler(
        color=["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    ),
}


def min_text_pt(fig: Figure) -> float:
    """The smallest font size, in points, of the visible text on ``fig``.

    Tick labels exist only once a figure is drawn, so the figure is laid out first
    (without rendering pixels). Empty strings do not count.
    """
    fig.draw_without_rendering()
    sizes = [
        float(t.get_fontsize())
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip()
    ]
    return min(sizes) if sizes else float("inf")


def phone_text_px(min_pt: float, width_px: float, dpi: float) -> float:
    """How tall ``min_pt``-point text is, in CSS pixels, in the phone's column.

    Parameters
    ----------
    min_pt : float
        The font size, in points (1/72 inch).
    width_px : float
        The saved image's width, in pixels.
    dpi : float
        The resolution it was saved at, in pixels per inch.

    Notes
    -----
    The image shows at its own pixel size, or at ``PHONE_COLUMN_PX`` when it is wider:
    ``min_pt * dpi / 72 * min(1, PHONE_COLUMN_PX / width_px)``.
    """
    return min_pt * dpi / 72 * min(1.0, PHONE_COLUMN_PX / width_px)


def _tagged_print_figure(original: Any) -> Any:
    def print_figure(self: Any, *args: Any, **kwargs: Any) -> Any:
        fmt = str(kwargs.get("format") or "png").lower()
        if fmt == "png":
            dpi = kwargs.get("dpi") or mpl.rcParams["savefig.dpi"]
            if dpi == "figure":
                dpi = self.figure.dpi
            metadata = dict(kwargs.get("metadata") or {})
            metadata[KEY_MIN_PT] = f"{min_text_pt(self.figure):.3f}"
            metadata[KEY_DPI] = f"{float(dpi):.3f}"
            kwargs["metadata"] = metadata
        return original(self, *args, **kwargs)

    print_figure._bnbook_tagged = True  # type: ignore[attr-defined]
    return print_figure


def use_book_style() -> None:
    """Set the book's matplotlib style and tag every PNG with its smallest font.

    Idempotent: a second call changes nothing more.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    mpl.rcParams.update(BOOK_RC)
    if not getattr(FigureCanvasBase.print_figure, "_bnbook_tagged", False):
        FigureCanvasBase.print_figure = _tagged_print_figure(  # type: ignore[method-assign]
            FigureCanvasBase.print_figure
        )
