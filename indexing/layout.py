"""Reading order for PDF pages: positioned text fragments in, page text out, columns read one after another.

pypdf's default text extraction writes text in content-stream order. Many typesetters draw a
multi-column page row by row across the columns (the IRS instructions do), so that order interleaves
the columns line by line. Here the page is cut recursively (an XY-cut) at the white space between
blocks: first at vertical gutters that separate text columns, else at the widest horizontal gap; a
region with neither is read line by line, top to bottom, left to right.

Everything here is plain geometry on `Fragment`s, so it is tested without PDFs: `formats.pdf_text`
turns a pypdf page into fragments, `ocr.engines` an OCR'd page's recognised words, and
`pages.glyphs` pdfium's glyphs (to box answers in the same reading order). The lowest module of
indexing, beside `pdfium`: plain Python, it imports nothing of spanqa.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

# A gutter is a vertical strip no fragment touches, at least this many font heights wide.
MIN_GUTTER_HEIGHTS = 0.6
# Each column a gutter separates is at least this share of the region's width: narrower "columns"
# are table cells or labels, which read better row by row.
MIN_COLUMN_SHARE = 0.2
# ... and holds text on at least this many lines, so a single line is never cut at a wide word space.
MIN_COLUMN_LINES = 3
# A horizontal gap this many font heights tall (beyond normal line spacing) separates blocks.
MIN_BAND_GAP_HEIGHTS = 0.5
# Two fragments whose baselines differ by less than this many font heights share a line.
SAME_LINE_HEIGHTS = 0.5
# A horizontal gap wider than this many font heights between two fragments of a line is a space.
SPACE_GAP_HEIGHTS = 0.15
# A vertical gap of this many font heights between consecutive lines is a paragraph break.
PARAGRAPH_GAP_HEIGHTS = 0.8
# Fragment boxes: from this far below the baseline to this far above it (in font heights).
DESCENT_HEIGHTS = 0.2
ASCENT_HEIGHTS = 0.75


@dataclass(frozen=True)
class Fragment:
    """Text drawn by one text-show operation: from x0 to x1 on the baseline y, in a font `height` tall."""

    text: str
    x0: float
    x1: float
    y: float
    height: float

    @property
    def bottom(self) -> float:
        return self.y - DESCENT_HEIGHTS * self.height

    @property
    def top(self) -> float:
        return self.y + ASCENT_HEIGHTS * self.height


def gaps(intervals: list[tuple[float, float]], min_width: float) -> list[tuple[float, float]]:
    """The gaps of at least `min_width` between the union of `intervals` (sorted by start, merged)."""
    found: list[tuple[float, float]] = []
    ordered = sorted(intervals)
    if not ordered:
        return found
    reach = ordered[0][1]
    for start, end in ordered[1:]:
        if start - reach >= min_width:
            found.append((reach, start))
        reach = max(reach, end)
    return found


def count_lines(fragments: list[Fragment]) -> int:
    return len(group_lines(fragments))


def column_cuts(fragments: list[Fragment], unit: float) -> list[float]:
    """x positions of the gutters that split `fragments` into text columns, left to right (maybe none)."""
    left = min(f.x0 for f in fragments)
    right = max(f.x1 for f in fragments)
    width = right - left
    if width <= 0:
        return []
    candidates = gaps([(min(f.x0, f.x1), max(f.x0, f.x1)) for f in fragments], MIN_GUTTER_HEIGHTS * unit)
    cuts = [(start + end) / 2 for start, end in candidates]
    # Drop cuts that leave a column too narrow or too short, narrowest columns first.
    while cuts:
        edges = [left, *cuts, right]
        columns = [
            [f for f in fragments if edges[i] <= (f.x0 + f.x1) / 2 < edges[i + 1]] for i in range(len(edges) - 1)
        ]
        # A column's width is that of its own text, not gutter to gutter: a column of short table
        # cells is narrow however far apart the cells stand.
        widths = [
            (max(f.x1 for f in column) - min(f.x0 for f in column)) if column else 0.0 for column in columns
        ]
        bad = [
            i
            for i in range(len(columns))
            if widths[i] < MIN_COLUMN_SHARE * width or count_lines(columns[i]) < MIN_COLUMN_LINES
        ]
        if not bad:
            return cuts
        worst = min(bad, key=lambda i: widths[i])
        # Remove the cut next to the worst column (the one on its narrower-neighbour side).
        if worst == 0:
            del cuts[0]
        elif worst == len(columns) - 1:
            del cuts[-1]
        elif widths[worst - 1] <= widths[worst + 1]:
            del cuts[worst - 1]
        else:
            del cuts[worst]
    return []


def band_cut(fragments: list[Fragment], unit: float) -> float | None:
    """The y of the widest horizontal gap between blocks of `fragments`, or None."""
    candidates = gaps([(f.bottom, f.top) for f in fragments], MIN_BAND_GAP_HEIGHTS * unit)
    if not candidates:
        return None
    start, end = max(candidates, key=lambda gap: gap[1] - gap[0])
    return (start + end) / 2


def reading_blocks(fragments: list[Fragment], unit: float | None = None) -> list[list[Fragment]]:
    """`fragments` split into blocks in reading order: columns left to right, bands top to bottom."""
    if unit is None:
        unit = median(f.height for f in fragments) if fragments else 1.0
    blocks: list[list[Fragment]] = []
    # An explicit stack instead of recursion: a page with thousands of short bands must not hit
    # Python's recursion limit. Pushed in reverse so the first block is popped first.
    stack = [fragments]
    while stack:
        region = stack.pop()
        if len(region) <= 1:
            if region:
                blocks.append(region)
            continue
        cuts = column_cuts(region, unit)
        if cuts:
            edges = [float("-inf"), *cuts, float("inf")]
            columns = [
                [f for f in region if edges[i] <= (f.x0 + f.x1) / 2 < edges[i + 1]] for i in range(len(edges) - 1)
            ]
            stack.extend(reversed([column for column in columns if column]))
            continue
        cut = band_cut(region, unit)
        if cut is not None:
            upper = [f for f in region if (f.bottom + f.top) / 2 >= cut]
            lower = [f for f in region if (f.bottom + f.top) / 2 < cut]
            if upper and lower:
                stack.extend([lower, upper])
                continue
        blocks.append(region)
    return blocks


def group_lines(fragments: list[Fragment]) -> list[list[Fragment]]:
    """Fragments grouped into lines (top to bottom), each line sorted left to right."""
    lines: list[list[Fragment]] = []
    line_y = 0.0
    line_height = 0.0
    for fragment in sorted(fragments, key=lambda f: (-f.y, f.x0)):
        if lines and line_y - fragment.y <= SAME_LINE_HEIGHTS * min(line_height, fragment.height):
            lines[-1].append(fragment)
            continue
        lines.append([fragment])
        line_y = fragment.y
        line_height = fragment.height
    return [sorted(line, key=lambda f: f.x0) for line in lines]


def line_text(line: list[Fragment]) -> str:
    parts: list[str] = []
    previous: Fragment | None = None
    for fragment in line:
        text = fragment.text
        if previous is not None and parts:
            gap = fragment.x0 - previous.x1
            joined = parts[-1]
            if (
                gap > SPACE_GAP_HEIGHTS * min(previous.height, fragment.height)
                and not joined[-1:].isspace()
                and not text[:1].isspace()
            ):
                parts.append(" ")
        parts.append(text)
        previous = fragment
    return "".join(parts).strip()


def block_text(block: list[Fragment]) -> tuple[str, float, float]:
    """The block's text (lines joined by newlines, a blank line at a paragraph gap), and its top and bottom."""
    lines = group_lines(block)
    out: list[str] = []
    previous_bottom: float | None = None
    for line in lines:
        text = line_text(line)
        if text == "":
            continue
        top = max(f.top for f in line)
        height = max(f.height for f in line)
        if previous_bottom is not None:
            out.append("\n\n" if previous_bottom - top >= PARAGRAPH_GAP_HEIGHTS * height else "\n")
        out.append(text)
        previous_bottom = min(f.bottom for f in line)
    return "".join(out), max(f.top for f in block), min(f.bottom for f in block)


def page_text(fragments: list[Fragment]) -> str:
    """The text of a page drawn as `fragments`, in reading order."""
    visible = [f for f in fragments if f.text.strip() != "" and f.height > 0]
    if not visible:
        return ""
    unit = median(f.height for f in visible)
    out: list[str] = []
    previous_bottom: float | None = None
    for block in reading_blocks(visible, unit):
        text, top, bottom = block_text(block)
        if text == "":
            continue
        if previous_bottom is not None:
            # A block below the previous one with a clear gap starts a paragraph; the top of the next
            # column (above the previous block's bottom) just continues the text.
            out.append("\n\n" if previous_bottom - top >= PARAGRAPH_GAP_HEIGHTS * unit else "\n")
        out.append(text)
        previous_bottom = bottom
    return "".join(out)
