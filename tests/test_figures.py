"""bnbook.figures: the book's style tags each PNG with its smallest font and dpi."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from IPython.core.pylabtools import print_figure  # noqa: E402
from PIL import Image  # noqa: E402

from bnbook.figures import (  # noqa: E402
    KEY_DPI,
    KEY_MIN_PT,
    MAX_WIDTH_IN,
    MIN_PHONE_TEXT_PX,
    min_text_pt,
    phone_text_px,
    use_book_style,
)


@pytest.fixture(autouse=True)
def book_style():
    with matplotlib.rc_context():
        use_book_style()
        yield
    plt.close("all")


def _png(fig) -> Image.Image:
    return Image.open(io.BytesIO(print_figure(fig, "png", bbox_inches="tight")))


def test_min_text_pt_finds_the_smallest_visible_text():
    fig, ax = plt.subplots()
    ax.set_xlabel("x")
    ax.text(0.5, 0.5, "small", fontsize=6.5)
    ax.text(0.5, 0.2, "hidden", fontsize=3, visible=False)
    assert min_text_pt(fig) == 6.5


def test_phone_text_px_scales_only_images_wider_than_the_column():
    # 10 pt at 100 dpi is 13.9 px; a 684 px image shows at half its size on a phone.
    assert phone_text_px(10, 300, 100) == pytest.approx(1000 / 72)
    assert phone_text_px(10, 684, 100) == pytest.approx(500 / 72)


def test_saved_png_records_min_font_and_dpi():
    fig, ax = plt.subplots()
    ax.plot([0, 1], label="line")
    ax.legend()
    image = _png(fig)
    assert float(image.text[KEY_MIN_PT]) == pytest.approx(10.5)
    assert float(image.text[KEY_DPI]) == pytest.approx(fig.dpi)


def test_style_default_figure_is_legible_on_a_phone_and_a_wide_one_is_not():
    fig, ax = plt.subplots()  # the style's default size
    ax.set_ylabel("loss")
    image = _png(fig)
    px = phone_text_px(float(image.text[KEY_MIN_PT]), image.size[0], fig.dpi)
    assert px >= MIN_PHONE_TEXT_PX
    wide, ax = plt.subplots(figsize=(2 * MAX_WIDTH_IN, 3))
    ax.set_ylabel("loss")
    image = _png(wide)
    px = phone_text_px(float(image.text[KEY_MIN_PT]), image.size[0], wide.dpi)
    assert px < MIN_PHONE_TEXT_PX


def test_use_book_style_twice_wraps_once():
    from matplotlib.backend_bases import FigureCanvasBase

    first = FigureCanvasBase.print_figure
    use_book_style()
    assert FigureCanvasBase.print_figure is first
