"""Highlight boxes of a span of page text on its PDF page, from pdfium's glyph positions.

A span (`start:end`) points into the page text spanqa reads with pypdf (`reading.read_pages`).
`glyph_alignment.align` maps that text onto the glyphs pdfium reports for the page (`read_glyphs`),
once per page; `span_boxes` then gives one box per visual line the span covers, in reading order.

A box is the union of its glyphs' tight boxes horizontally and of their font boxes (descent to
ascent) vertically. The rule for boxes, and for what cannot be aligned: every box returned holds
glyphs of the span only and reads back, through pdfium's own FPDFText_GetBoundedText (which takes
every glyph whose tight box overlaps the rectangle with positive area, in pdfium's order), as one
contiguous piece of the span's text. So a line's box is cut where a character of the span is
unaligned or where pdfium's order runs backwards (`line_groups`); a box that would also take in
another glyph is narrowed to the tight boxes, then trimmed at its ends, then cut into the pieces of
the line on either side of that glyph; what still cannot be boxed alone is left out. A span that is
partly unaligned gets boxes for what is aligned; one not aligned at all gets none. Fewer boxes,
never a box over other text. (What the alignment cannot tell apart, identical text in two places
that nothing on the page distinguishes, it leaves unaligned: see `glyph_alignment`.)

Everything except `read_glyphs` is plain Python on `PageGlyphs`, tested without PDFs; pypdfium2 and
numpy are imported on first use.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spanqa.indexing.pages.glyph_alignment import Alignment, align
from spanqa.indexing.pages.glyphs import PageGlyphs, normalized, same_visual_line

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HighlightBox", "PageGlyphs", "Alignment", "align", "span_boxes", "read_glyphs"]

# pdfium reports a hyphen that ends a line (a word broken across lines) as U+0002 flagged as a hyphen,
# or as this non-character; its bounded text holds that code, not "-".
PDFIUM_LINE_END_HYPHEN = 0xFFFE
# Glyphs of one line of ours further apart than this many font heights get separate boxes (a word
# space is about a quarter of one; a gutter between columns several).
GROUP_GAP_HEIGHTS = 2.5


@dataclass(frozen=True)
class HighlightBox:
    """A box on page `page` (1-based) in PDF user-space points, origin bottom-left: x0 < x1, y0 < y1."""

    page: int
    x0: float
    y0: float
    x1: float
    y1: float

    def to_json(self) -> dict[str, float | int]:
        return {"page": self.page, "x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}


def line_groups(page_text: str, offsets: list[int], matched: list[int], boxes: np.ndarray) -> list[list[int]]:
    """The aligned glyphs of a span in groups that each get one box, in reading order. A group ends
    at a line break of our text; where the next glyph is not on the same visual line, or lies more
    than GROUP_GAP_HEIGHTS font heights further on (columns our text reads as one line); where a
    character of ours is unaligned (a box over its neighbours would not read back as a piece of our
    text); and where pdfium's order goes back (pdfium reads the glyphs inside a box in its order)."""
    groups: list[list[int]] = []
    previous_offset: int | None = None
    bottom = top = 0.0
    broken = False
    for offset, glyph in zip(offsets, matched):
        if glyph < 0:
            broken = True
            continue
        if not (boxes[glyph, 0] < boxes[glyph, 2] and boxes[glyph, 1] < boxes[glyph, 3]):
            continue  # a glyph without area: no box can show it, pdfium never counts it as inside
        if groups and glyph == groups[-1][-1]:
            continue  # one glyph read as several characters (a ligature)
        if (
            not groups
            or broken
            or glyph < groups[-1][-1]
            or page_text.find("\n", previous_offset, offset) != -1
            or not same_visual_line(boxes, glyph, bottom, top)
            or wide_gap(boxes, groups[-1][-1], glyph)
        ):
            groups.append([glyph])
            bottom, top = float(boxes[glyph, 4]), float(boxes[glyph, 5])
        else:
            groups[-1].append(glyph)
            bottom, top = min(bottom, float(boxes[glyph, 4])), max(top, float(boxes[glyph, 5]))
        previous_offset = offset
        broken = False
    return groups


def wide_gap(boxes: np.ndarray, previous: int, glyph: int) -> bool:
    height = max(float(boxes[previous, 5] - boxes[previous, 4]), float(boxes[glyph, 5] - boxes[glyph, 4]))
    return float(boxes[glyph, 0] - boxes[previous, 2]) > GROUP_GAP_HEIGHTS * height


def inside(glyphs: PageGlyphs, box: tuple[float, float, float, float]) -> set[int]:
    """The visible glyphs pdfium counts as inside `box`: tight box overlapping it with positive area."""
    import numpy as np

    b = glyphs.boxes
    x0, y0, x1, y1 = (np.float32(v) for v in box)
    hits = (b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0)
    return {int(i) for i in np.flatnonzero(hits) if not glyphs.text[i].isspace()}


def line_box(glyphs: PageGlyphs, line: list[int]) -> tuple[float, float, float, float] | None:
    """The box of one visual line of a span, or None if no box holds its glyphs and nothing else."""
    b = glyphs.boxes[line]
    x0, x1 = float(b[:, 0].min()), float(b[:, 2].max())
    own = set(line)
    for y0, y1 in ((float(b[:, 4].min()), float(b[:, 5].max())), (float(b[:, 1].min()), float(b[:, 3].max()))):
        if x0 >= x1 or y0 >= y1:
            continue
        box = (x0, y0, x1, y1)
        others = inside(glyphs, box) - own
        if not others:
            return box
        trimmed = trim(glyphs, line, box, others)
        if trimmed is not None and not (inside(glyphs, trimmed) - own):
            return trimmed
    return None


def trim(
    glyphs: PageGlyphs, line: list[int], box: tuple[float, float, float, float], others: set[int]
) -> tuple[float, float, float, float] | None:
    """`box` with its left and right edges moved in past glyphs of other text that overlap its ends
    (kerned or italic neighbours), as long as every glyph of the line still overlaps it."""
    b = glyphs.boxes
    x0, y0, x1, y1 = box
    first_right = float(b[line, 2].min())  # the box must keep overlapping every own glyph
    last_left = float(b[line, 0].max())
    for other in others:
        left, right = float(b[other, 0]), float(b[other, 2])
        if right <= first_right:
            x0 = max(x0, right)
        elif left >= last_left:
            x1 = min(x1, left)
        else:
            return None  # inside the line: no edge can leave it out
    if x0 >= first_right or x1 <= last_left or x0 >= x1:
        return None
    return x0, y0, x1, y1


def span_boxes(
    page_text: str, glyphs: PageGlyphs, alignment: Alignment, start: int, end: int, page: int
) -> list[HighlightBox]:
    """The boxes of page text [start, end) on page `page`: one per visual line (more where the line
    is broken, see `line_groups`), in reading order; see the module docstring."""
    offsets, matched = alignment.span(start, end)
    boxes = []
    for group in line_groups(page_text, offsets, matched, glyphs.boxes):
        box = line_box(glyphs, group)
        if box is not None:
            boxes.append(HighlightBox(page, *box))
            continue
        # Another glyph lies inside the line's box (a superscript read elsewhere, a glyph pypdf did
        # not see): box the pieces of the line on either side of it.
        piece: list[int] = []
        piece_box = None
        for glyph in group:
            grown = line_box(glyphs, [*piece, glyph])
            if grown is None and piece:
                if piece_box is not None:
                    boxes.append(HighlightBox(page, *piece_box))
                piece, grown = [glyph], line_box(glyphs, [glyph])
            else:
                piece.append(glyph)
            piece_box = grown
        if piece and piece_box is not None:
            boxes.append(HighlightBox(page, *piece_box))
    return boxes


def read_glyphs(textpage: Any) -> PageGlyphs:
    """The glyphs of a pypdfium2 `PdfTextPage` (the caller holds the pdfium lock)."""
    import ctypes

    import numpy as np
    import pypdfium2.raw as pdfium_c

    count = textpage.count_chars()
    boxes = np.zeros((count, 6), dtype=np.float32)
    objects = array("q", bytes(8 * count))
    chars: list[str] = []
    left, right, bottom, top = ctypes.c_double(), ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
    loose = pdfium_c.FS_RECTF()
    for index in range(count):
        code = pdfium_c.FPDFText_GetUnicode(textpage, index)
        generated = pdfium_c.FPDFText_IsGenerated(textpage, index) == 1
        if code == PDFIUM_LINE_END_HYPHEN or pdfium_c.FPDFText_IsHyphen(textpage, index) == 1:
            char = "-"
        elif code <= 0 or generated or code > 0x10FFFF:
            char = " "
        else:
            char = chr(code)
        if pdfium_c.FPDFText_GetCharBox(textpage, index, left, right, bottom, top):
            boxes[index, :4] = (left.value, bottom.value, right.value, top.value)
        else:
            char = " "  # no position: cannot be highlighted, so it must not be matched either
        if pdfium_c.FPDFText_GetLooseCharBox(textpage, index, loose):
            boxes[index, 4:] = (loose.bottom, loose.top)
        else:
            boxes[index, 4:] = boxes[index, [1, 3]]
        address = ctypes.cast(pdfium_c.FPDFText_GetTextObject(textpage, index), ctypes.c_void_p).value
        objects[index] = 0 if address is None else address  # None: a generated character
        chars.append(char)
    return PageGlyphs("".join(chars), normalized(boxes), objects)
