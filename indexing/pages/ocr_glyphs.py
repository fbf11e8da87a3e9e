"""An OCR'd page's words as glyphs (`PageGlyphs`), so answers on scans get highlight boxes.

A page with a text layer has pdfium's glyphs, each with its box; an OCR'd page has only the boxes
the engine reports, one per recognised line (RapidOCR) or word (Tesseract). Each such box is shared
out among its characters in proportion to their usual advance widths (a proportional font's 'i' is a
third of its 'm'; a CJK character is square), which places a span's ends within about a character
of the ink. The glyphs are then aligned to the page text and boxed exactly as pdfium's are
(`highlight.span_boxes`): the page text was made from these same words, so every character aligns.

The glyphs lie in the page as shown (points from its bottom-left corner, after its /Rotate), where
OCR'd lines run left to right as the alignment expects; `to_user_space` moves the boxes made there
onto the page's user space, where every highlight box lives.

Plain Python on `ocr.OcrPage`, tested without an engine.
"""

from __future__ import annotations

import unicodedata

from spanqa.indexing.ocr.engines import OcrPage, PageFrame
from spanqa.indexing.pages.glyphs import PageGlyphs
from spanqa.indexing.pages.highlight import HighlightBox

# Advance widths in ems, roughly those of a proportional Latin font; other characters take
# DEFAULT_ADVANCE, wide (CJK) ones FULL_ADVANCE.
NARROW_ADVANCE, NARROW = 0.28, frozenset(" .,:;'!|`ijlI()[]{}/\\\"-ft")
WIDE_ADVANCE, WIDE = 0.85, frozenset("mwMW@%")
CAPITAL_ADVANCE = 0.68
DEFAULT_ADVANCE = 0.52
FULL_ADVANCE = 1.0


def advance(character: str) -> float:
    """A character's usual advance width, in ems."""
    if character in NARROW or character.isspace():
        return NARROW_ADVANCE
    if character in WIDE:
        return WIDE_ADVANCE
    if unicodedata.east_asian_width(character) in ("W", "F"):
        return FULL_ADVANCE
    if character.isupper():
        return CAPITAL_ADVANCE
    return DEFAULT_ADVANCE


def ocr_glyphs(page: OcrPage) -> PageGlyphs:
    """The characters of `page`'s recognised words, in the engine's order (a space between words),
    each with a share of its word's box, in points of the page as shown."""
    width, height = page.frame.shown_size
    x_scale, y_scale = width / page.width, height / page.height
    text: list[str] = []
    tight: list[tuple[float, float, float, float]] = []
    for word in page.words:
        bottom, top = height - word.bottom * y_scale, height - word.top * y_scale
        if text:
            # A separator without area: it is never matched or boxed, only keeps words apart.
            text.append(" ")
            tight.append((word.left * x_scale, bottom, word.left * x_scale, bottom))
        weights = [advance(character) for character in word.text]
        total = sum(weights)
        left = word.left * x_scale
        for character, weight in zip(word.text, weights):
            right = left + (word.right - word.left) * x_scale * weight / total
            text.append(character)
            tight.append((left, bottom, right, top))
            left = right
    return PageGlyphs.from_boxes("".join(text), tight)


def to_user_space(box: HighlightBox, frame: PageFrame) -> HighlightBox:
    """A box made on the page as shown (see `ocr_glyphs`), in the page's user space."""
    width, height = frame.shown_size
    corners = [frame.to_user(x / width, 1 - y / height) for x, y in ((box.x0, box.y0), (box.x1, box.y1))]
    xs, ys = sorted(corner[0] for corner in corners), sorted(corner[1] for corner in corners)
    return HighlightBox(box.page, xs[0], ys[0], xs[1], ys[1])
