"""pdfium's glyphs of a page as plain data (`PageGlyphs`), how characters are compared (`fold_char`,
`common_prefix`), where lines and words lie, and the reading order of the glyphs (`reading_order`):
the pieces `glyph_alignment` works with, plain Python and numpy, tested without PDFs.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Sequence

from spanqa.indexing.layout import DESCENT_HEIGHTS, Fragment, group_lines, reading_blocks

if TYPE_CHECKING:
    import numpy as np

# Two glyphs are on one visual line when their vertical extents overlap by this share of the smaller.
SAME_LINE_OVERLAP = 0.5
# Reading order: one text object's glyphs further apart than this many font heights are two fragments.
CELL_GAP_HEIGHTS = 1.0

DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
SINGLE_QUOTES = "\u2018\u2019\u201a\u201b\u2032"
DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f\u2033"
FOLDS = str.maketrans(
    {**dict.fromkeys(DASHES, "-"), **dict.fromkeys(SINGLE_QUOTES, "'"), **dict.fromkeys(DOUBLE_QUOTES, '"')}
)
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


@dataclass(frozen=True)
class PageGlyphs:
    """pdfium's characters of one page in its order.

    `text` holds one character per glyph (a space for whitespace pdfium generates); `boxes` is a
    float32 array of shape (n, 6): the tight box x0, y0, x1, y1 (what FPDFText_GetBoundedText tests)
    and the font box's bottom and top (descent to ascent, at least the tight box's extent).
    `objects`, when known, names the text object (one text-show operation) each glyph belongs to
    (0: none, as for whitespace pdfium generates).
    """

    text: str
    boxes: Any
    objects: Sequence[int] | None = None

    @classmethod
    def from_boxes(
        cls, text: str, tight: Sequence[Sequence[float]], loose: Sequence[Sequence[float]] | None = None
    ) -> PageGlyphs:
        """Glyphs from plain lists: `tight[i]` = (x0, y0, x1, y1), `loose[i]` = (bottom, top) or tight's."""
        import numpy as np

        if len(tight) != len(text) or (loose is not None and len(loose) != len(text)):
            raise ValueError(f"{len(text)} glyphs need as many boxes (got {len(tight)} tight)")
        boxes = np.zeros((len(text), 6), dtype=np.float32)
        if len(text) > 0:
            boxes[:, :4] = np.asarray(tight, dtype=np.float32).reshape(len(text), 4)
            boxes[:, 4:] = boxes[:, [1, 3]] if loose is None else np.asarray(loose, dtype=np.float32)
        return cls(text, normalized(boxes))


def normalized(boxes: np.ndarray) -> np.ndarray:
    """Boxes with x0 <= x1 and y0 <= y1 (pdfium normalises a glyph box before testing it), and font
    boxes that hold the tight ones."""
    import numpy as np

    out = boxes.copy()
    out[:, 0], out[:, 2] = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    out[:, 1], out[:, 3] = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    out[:, 4], out[:, 5] = np.minimum(out[:, 1], boxes[:, 4]), np.maximum(out[:, 3], boxes[:, 5])
    return out



@lru_cache(maxsize=8192)
def fold_char(char: str) -> str:
    """What one character is compared as: NFKC, dashes and quotes unified; "" for whitespace and
    invisible characters (soft hyphens, controls), which the two extractors disagree on."""
    if unicodedata.category(char) in INVISIBLE_CATEGORIES:
        return ""
    folded = unicodedata.normalize("NFKC", char).translate(FOLDS)
    return "".join(c for c in folded if unicodedata.category(c) not in INVISIBLE_CATEGORIES)


def fold_text(text: str) -> tuple[str, list[int]]:
    """`text` folded character by character, and for each folded character the index it came from."""
    parts: list[str] = []
    owners: list[int] = []
    for index, char in enumerate(text):
        folded = fold_char(char)
        if folded:
            parts.append(folded)
            owners.extend([index] * len(folded))
    return "".join(parts), owners


def same_visual_line(boxes: np.ndarray, glyph: int, bottom: float, top: float) -> bool:
    """Whether `glyph`'s font box overlaps the vertical extent [bottom, top] enough to share its line."""
    low, high = float(boxes[glyph, 4]), float(boxes[glyph, 5])
    overlap = min(high, top) - max(low, bottom)
    smaller = min(high - low, top - bottom)
    return smaller <= 0 or overlap >= SAME_LINE_OVERLAP * smaller


def visible_mask(glyphs: PageGlyphs) -> np.ndarray:
    """Which glyphs show something: a character that is not whitespace, with a box of some area."""
    import numpy as np

    b = glyphs.boxes
    has_area = (b[:, 0] < b[:, 2]) & (b[:, 1] < b[:, 3])
    return has_area & np.fromiter((not c.isspace() for c in glyphs.text), dtype=bool, count=len(glyphs.text))


@dataclass(frozen=True)
class Extent:
    """Where some glyphs lie: x0, x1 and the font boxes' bottom and top."""

    x0: float
    x1: float
    bottom: float
    top: float

    @classmethod
    def of(cls, boxes: np.ndarray, glyphs: Sequence[int]) -> Extent:
        b = boxes[list(glyphs)]
        return cls(float(b[:, 0].min()), float(b[:, 2].max()), float(b[:, 4].min()), float(b[:, 5].max()))


def reading_order(glyphs: PageGlyphs) -> list[int]:
    """The visible glyphs in the reading order spanqa reads pages in (`layout.reading_blocks`: columns
    one after another), from runs of glyphs: pdfium's text objects when known, else glyphs drawn side
    by side on one baseline."""
    b = glyphs.boxes
    visible = visible_mask(glyphs)
    runs: list[list[int]] = []
    for glyph in range(len(glyphs.text)):
        if glyphs.objects is not None:
            # Runs are text-show operations, as the fragments our page text was read from.
            if glyphs.objects[glyph] == 0:
                continue
            if runs and runs[-1] and glyphs.objects[runs[-1][-1]] == glyphs.objects[glyph]:
                previous = runs[-1][-1]
                # ... cut where one operation leaves a gap of a few spaces (table cells in one TJ).
                height = float(b[previous, 5] - b[previous, 4])
                if float(b[glyph, 0] - b[previous, 2]) <= CELL_GAP_HEIGHTS * height:
                    runs[-1].append(glyph)
                    continue
            runs.append([glyph])
            continue
        if not visible[glyph]:
            if runs and runs[-1]:
                runs.append([])
            continue
        if runs and runs[-1]:
            previous = runs[-1][-1]
            height = float(b[previous, 5] - b[previous, 4])
            gap = float(b[glyph, 0] - b[previous, 2])
            same_line = same_visual_line(b, glyph, float(b[previous, 4]), float(b[previous, 5]))
            if same_line and -0.5 * height <= gap <= 0.3 * height:
                runs[-1].append(glyph)
                continue
        runs.append([glyph])
    runs = [[g for g in run if visible[g]] for run in runs]
    fragments: dict[Fragment, list[int]] = {}
    for run in (r for r in runs if r):
        extent = Extent.of(b, run)
        # Font boxes span descent to ascent: map them onto layout's band (0.2 below to 0.75 above
        # the baseline, in font heights) so that lines and gaps are judged as for our page text.
        height = (extent.top - extent.bottom) / (DESCENT_HEIGHTS + 0.75)
        fragment = Fragment(str(run[0]), extent.x0, extent.x1, extent.bottom + DESCENT_HEIGHTS * height, height)
        fragments[fragment] = run
    if not fragments:
        return []
    order: list[int] = []
    for block in reading_blocks([f for f in fragments if f.height > 0]):
        for line in group_lines(block):
            for fragment in line:
                order.extend(fragments[fragment])
    placed = set(order)
    order.extend(g for f, run in fragments.items() for g in run if g not in placed)  # zero-height ones
    return order


def common_prefix(a: str, i: int, b: str, j: int, limit: int) -> int:
    """How many characters a[i:] and b[j:] share from the start, at most `limit`."""
    limit = max(0, min(limit, len(a) - i, len(b) - j))
    if a[i : i + limit] == b[j : j + limit]:
        return limit
    low, high = 0, limit - 1  # binary search on slice equality (each comparison runs in C)
    while low < high:
        middle = (low + high + 1) // 2
        if a[i : i + middle] == b[j : j + middle]:
            low = middle
        else:
            high = middle - 1
    return low


def common_suffix(a: str, i: int, b: str, j: int, limit: int) -> int:
    """How many characters a[:i] and b[:j] share at their ends, at most `limit`."""
    low, high = 0, max(0, min(limit, i, j))
    while low < high:
        middle = (low + high + 1) // 2
        if a[i - middle : i] == b[j - middle : j]:
            low = middle
        else:
            high = middle - 1
    return low


def row_ends(theirs_glyph: list[int], glyphs: PageGlyphs) -> list[int]:
    """For each character of pdfium's folded text (in reading order), where the run of characters on
    the visual line of its glyph ends (one text object is one line, even turned): no piece of one
    line of ours runs past it."""
    boxes, objects = glyphs.boxes, glyphs.objects
    ends = [len(theirs_glyph)] * len(theirs_glyph)
    for k in range(len(theirs_glyph) - 2, -1, -1):
        glyph, following = theirs_glyph[k], theirs_glyph[k + 1]
        same_object = objects is not None and objects[glyph] != 0 and objects[glyph] == objects[following]
        if (
            glyph == following
            or same_object
            or same_visual_line(boxes, following, float(boxes[glyph, 4]), float(boxes[glyph, 5]))
        ):
            ends[k] = ends[k + 1]
        else:
            ends[k] = k + 1
    return ends


def word_edges(text: str, owners: list[int]) -> tuple[list[bool], list[bool]]:
    """For each folded character (from text[owners[k]]), whether it starts a word and whether it ends one."""
    starts, ends = [], []
    for k, owner in enumerate(owners):
        first = k == 0 or owners[k - 1] != owner
        last = k + 1 == len(owners) or owners[k + 1] != owner
        starts.append(first and (owner == 0 or text[owner - 1].isspace()))
        ends.append(last and (owner + 1 == len(text) or text[owner + 1].isspace()))
    return starts, ends


def line_ranges(page_text: str, owners: list[int]) -> list[tuple[int, int]]:
    """The ranges of folded characters (indices into `owners`) of each non-blank line of `page_text`."""
    ranges = []
    line_start = 0
    while True:
        newline = page_text.find("\n", line_start)
        line_end = len(page_text) if newline == -1 else newline
        begin, end = bisect_left(owners, line_start), bisect_left(owners, line_end)
        if end > begin:
            ranges.append((begin, end))
        if newline == -1:
            return ranges
        line_start = newline + 1
