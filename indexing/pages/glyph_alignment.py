"""Our page text mapped onto pdfium's glyphs: plain Python on `PageGlyphs`, tested without PDFs.

The page text spanqa reads with pypdf (reading order, columns one after another) and the characters
pdfium reports for the same page differ in whitespace, line breaks, ligatures and unicode forms, and
in ORDER: pdfium reports glyphs in content-stream order, which on many multi-column pages interleaves
the columns line by line. So pdfium's glyphs are first put in our reading order (`glyphs.
reading_order`: the same column-by-column XY-cut, on runs of glyphs), and both texts are folded
(`glyphs.fold_char`: NFKC, dashes and quotes unified, whitespace and invisible characters dropped).
Then, line by line of our text:

0. Certain lines. A line that occurs exactly once in our text and once in pdfium's is matched there.
1. By text. Each other line is matched in pieces: a piece is the longest run of the line found among
   pdfium's still unmatched characters, on one visual line, and, after the line's first piece, on
   the visual line of that piece; a run shorter than MIN_DISAMBIGUATED_CHARS must also start and
   end words where ours does (in tables digits recur everywhere). Between occurrences of equal
   length wins the one whose surroundings match the rest of our line, then the one that continues
   where the previous piece ended (a new line of ours never continues the previous line's row),
   then the one decisively nearest on the page to where our text goes on, then the one whose
   surroundings match our neighbouring lines (at the start of a page, the first). Otherwise the
   run is left for pass 2. A piece shorter than MIN_ANCHOR_CHARS is taken only where it continues
   the previous piece and ends its line.
2. By place. What is left is matched where its occurrence is the only one in the right place: a run
   inside a line on the visual line of its matched neighbours, between them (close to them or with
   nothing between); a whole line just below the line before it or just above the line after it,
   overlapping that line horizontally. Short lines ("30.", a page number, a table cell) are placed
   this way, never by text alone.

What no pass can place stays unaligned (`Alignment` says -1): `highlight` then shows less, never
other text.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass

from spanqa.indexing.pages.glyphs import (
    SAME_LINE_OVERLAP,
    Extent,
    PageGlyphs,
    common_prefix,
    common_suffix,
    fold_text,
    line_ranges,
    reading_order,
    row_ends,
    same_visual_line,
    visible_mask,
    word_edges,
)

# A piece found by text alone (not continuing the previous one) needs this many matching characters.
MIN_ANCHOR_CHARS = 4
# A run shorter than this found by text alone must start and end words where ours does.
MIN_DISAMBIGUATED_CHARS = 8
# Characters of context compared on each side of a candidate occurrence.
CONTEXT_CHARS = 16
# pdfium characters that may lie unmatched between two pieces that continue each other.
CONTINUATION_SLACK = 2
# Occurrences looked at per piece; a more common key is lengthened first.
MAX_CANDIDATES = 64
# Between equally good occurrences, the nearest wins only if it is this much nearer than the next.
DECISIVE_DISTANCE_RATIO = 0.5
# Pass 2: a run lies within this many font heights of its lone neighbour on the same visual line;
# a whole line lies at most this many line heights below (above) the line before (after) it.
GAP_HEIGHTS = 3.0
NEIGHBOUR_LINES = 2.5
# Stands for a matched character in the live stream (folding never produces it).
USED = "\x00"


@dataclass(frozen=True)
class Alignment:
    """Folded character k of our page text comes from page offset `offsets[k]` and was matched to
    glyph `glyphs[k]` (-1: not aligned)."""

    offsets: array
    glyphs: array

    def span(self, start: int, end: int) -> tuple[list[int], list[int]]:
        """The folded characters of page text [start, end): their page offsets and glyphs."""
        lo = bisect_left(self.offsets, start)
        hi = bisect_left(self.offsets, end)
        return list(self.offsets[lo:hi]), list(self.glyphs[lo:hi])

    def aligned_share(self) -> float:
        if len(self.glyphs) == 0:
            return 1.0
        return sum(1 for g in self.glyphs if g >= 0) / len(self.glyphs)


@dataclass
class Candidate:
    start: int  # in pdfium's folded text (`Matcher.theirs`)
    length: int
    context: int  # matching characters around it inside our line
    continues: bool  # where the previous piece ended (give or take CONTINUATION_SLACK characters)
    outer: int  # matching characters around it, across line breaks too


class Matcher:
    """Matches our folded page text (`ours`) onto pdfium's (`theirs`, its glyphs in reading order,
    `theirs_glyph[k]` the glyph of character k); see the module docstring."""

    def __init__(self, ours: str, theirs: str, theirs_glyph: list[int], glyphs: PageGlyphs):
        self.ours = ours
        self.theirs = theirs
        self.live = theirs  # `theirs` with matched characters replaced by USED
        self.theirs_glyph = theirs_glyph
        self.boxes = glyphs.boxes
        self.visible = visible_mask(glyphs)
        self.match = [-1] * len(ours)
        self.row_end = row_ends(theirs_glyph, glyphs)
        self.previous_end: int | None = None
        self.last_glyph: int | None = None
        self.line_first_glyph: int | None = None
        self.line_last_glyph: int | None = None  # of the line being matched
        # Whether each character of ours, then of theirs, starts a word and ends one (see `align`).
        self.word_edges: tuple[list[bool], list[bool], list[bool], list[bool]] | None = None

    def take(self, position: int, start: int, length: int) -> None:
        for offset in range(length):
            self.match[position + offset] = start + offset
        self.live = self.live[:start] + USED * length + self.live[start + length :]

    def run(self, lines: list[tuple[int, int]]) -> None:
        anchored = self.anchor_unique_lines(lines)
        for index, (begin, end) in enumerate(lines):
            if index in anchored:
                self.previous_end = self.match[end - 1] + 1
                self.last_glyph = self.theirs_glyph[self.match[end - 1]]
                self.line_first_glyph = self.theirs_glyph[self.match[begin]]
            else:
                self.match_pieces(begin, end)
        for index in range(len(lines)):
            self.place(lines, index)

    def anchor_unique_lines(self, lines: list[tuple[int, int]]) -> set[int]:
        """Matches first every line that occurs exactly once in our text and once in pdfium's, whole:
        those matches are certain, and no later, less certain match can take their characters."""
        texts = [self.ours[begin:end] for begin, end in lines]
        separated = "\x01".join(texts)  # our lines apart: a line's text may run on into the next
        anchored = set()
        for index, text in enumerate(texts):
            if len(text) < MIN_ANCHOR_CHARS or separated.count(text) != 1 or self.theirs.count(text) != 1:
                continue
            start = self.live.find(text)
            if start != -1 and self.row_end[start] >= start + len(text):
                self.take(lines[index][0], start, len(text))
                anchored.add(index)
        return anchored

    # Pass 1: by text.

    def match_pieces(self, begin: int, end: int) -> None:
        position = begin
        first_of_line: int | None = None
        self.line_last_glyph = None
        while position < end:
            found = self.best_piece(position, begin, end)
            if found is None:
                position += 1
                continue
            start, length = found
            if start < 0:  # ambiguous: the whole run is left for pass 2
                position += length
                continue
            self.take(position, start, length)
            self.previous_end = start + length
            self.last_glyph = self.theirs_glyph[start + length - 1]
            self.line_last_glyph = self.last_glyph
            if first_of_line is None:
                first_of_line = self.theirs_glyph[start]
            position += length
        if first_of_line is not None:
            self.line_first_glyph = first_of_line

    def candidate_starts(self, position: int, end: int) -> list[int]:
        remainder = end - position
        key_length = min(MIN_ANCHOR_CHARS, remainder)
        while True:
            key = self.ours[position : position + key_length]
            starts: list[int] = []
            found = self.live.find(key)
            while found != -1 and len(starts) <= MAX_CANDIDATES:
                starts.append(found)
                found = self.live.find(key, found + 1)
            if len(starts) <= MAX_CANDIDATES or key_length >= remainder:
                return starts
            key_length = min(remainder, 2 * key_length)

    def candidate(self, position: int, begin: int, end: int, start: int, continues: bool) -> Candidate:
        # A piece of one line of ours stays on one visual line of the page.
        limit = min(end - position, self.row_end[start] - start)
        length = common_prefix(self.ours, position, self.live, start, limit)
        # Context inside our line counts first; across a line break it is weaker evidence (our
        # reading order and the one rebuilt for pdfium's glyphs may differ there).
        before = common_suffix(self.ours, position, self.theirs, start, CONTEXT_CHARS)
        after = common_prefix(self.ours, position + length, self.theirs, start + length, CONTEXT_CHARS)
        inside = min(before, position - begin) + min(after, end - position - length)
        return Candidate(start, length, inside if length > 0 else 0, continues, before + after if length > 0 else 0)

    def best_piece(self, position: int, begin: int, end: int) -> tuple[int, int] | None:
        """(start in `theirs`, length) of the next piece of line ours[begin:end] at `position`;
        (-1, length) when ambiguous; None when nothing fits and ours[position] is left for pass 2.
        The order of preference is the module docstring's (pass 1)."""
        candidates: dict[int, Candidate] = {}
        if self.previous_end is not None:
            for start in range(self.previous_end, min(self.previous_end + CONTINUATION_SLACK + 1, len(self.live))):
                if self.live[start] == USED:
                    break
                # A new line of ours does not go on along the row where the previous one ended (there
                # the reading order rebuilt for pdfium's glyphs ran on across a gutter ours cut at).
                continues = position > begin or not self.on_last_row(self.theirs_glyph[start])
                candidates[start] = self.candidate(position, begin, end, start, continues)
        for start in self.candidate_starts(position, end):
            if start not in candidates:
                candidates[start] = self.candidate(position, begin, end, start, False)
        if self.word_edges is not None:
            # A short run found by text alone starts and ends words where ours does ("225" is no
            # match for the end of "2,225"): digits and short words recur everywhere in tables.
            ours_start, ours_end, theirs_start, theirs_end = self.word_edges
            candidates = {
                start: c
                for start, c in candidates.items()
                if c.continues
                or c.length >= MIN_DISAMBIGUATED_CHARS
                or c.length == 0
                or (
                    ours_start[position] == theirs_start[start]
                    and ours_end[position + c.length - 1] == theirs_end[start + c.length - 1]
                )
            }
        if self.line_last_glyph is not None:
            # The rest of a line lies on the visual line where the line's first pieces lie.
            b = self.boxes
            bottom, top = float(b[self.line_last_glyph, 4]), float(b[self.line_last_glyph, 5])
            candidates = {
                start: c
                for start, c in candidates.items()
                if same_visual_line(b, self.theirs_glyph[start], bottom, top)
            }
        ranked = sorted(
            (c for c in candidates.values() if c.length > 0),
            key=lambda c: (-c.length, -c.context, not c.continues, c.start),
        )
        if not ranked:
            return None
        best = ranked[0]
        if best.length < MIN_ANCHOR_CHARS and not (best.continues and best.length == end - position):
            return None
        ties = [c for c in ranked if c.length == best.length and c.context == best.context]
        continuing = [c for c in ties if c.continues]
        if len(ties) == 1 or len(continuing) == 1:
            chosen = ties[0] if len(ties) == 1 else continuing[0]
            return chosen.start, chosen.length
        if self.last_glyph is not None:
            distances = sorted((self.distance(self.theirs_glyph[c.start], position == begin), c.start) for c in ties)
            if distances[0][0] < DECISIVE_DISTANCE_RATIO * distances[1][0]:
                return distances[0][1], best.length
        most = max(c.outer for c in ties)
        if most > 0 and sum(1 for c in ties if c.outer == most) == 1:
            chosen = next(c for c in ties if c.outer == most)
            return chosen.start, chosen.length
        if self.last_glyph is None:
            return best.start, best.length  # the first in reading order
        return -1, best.length

    def on_last_row(self, glyph: int) -> bool:
        if self.last_glyph is None:
            return False
        b = self.boxes
        return same_visual_line(b, glyph, float(b[self.last_glyph, 4]), float(b[self.last_glyph, 5]))

    def distance(self, glyph: int, line_start: bool) -> float:
        """How far `glyph` is from where our text goes on (in points, the vertical offset counting
        fully): inside a line, from the last matched glyph; at the start of a line, from the start of
        the previous line, one line down (a new line of ours never continues the previous one's row)."""
        previous = self.boxes[self.last_glyph]
        box = self.boxes[glyph]
        dy = abs(float((box[4] + box[5]) - (previous[4] + previous[5])) / 2)
        if not line_start:
            return dy + 0.25 * abs(float(box[0] - previous[2])) + 1e-3
        first = previous if self.line_first_glyph is None else self.boxes[self.line_first_glyph]
        height = float(previous[5] - previous[4])
        return abs(dy - height) + 0.25 * abs(float(box[0] - first[0])) + 1e-3

    # Pass 2: by place.

    def matched_glyphs(self, begin: int, end: int) -> list[int]:
        return [self.theirs_glyph[j] for j in self.match[begin:end] if j >= 0]

    def place(self, lines: list[tuple[int, int]], index: int) -> None:
        begin, end = lines[index]
        if any(j >= 0 for j in self.match[begin:end]):
            self.place_runs(begin, end)
            return
        before = next((g for i in range(index - 1, -1, -1) if (g := self.matched_glyphs(*lines[i]))), None)
        after = next((g for i in range(index + 1, len(lines)) if (g := self.matched_glyphs(*lines[i]))), None)
        above = None if before is None else Extent.of(self.boxes, before)
        below = None if after is None else Extent.of(self.boxes, after)
        if above is None and below is None:
            return

        def beside_lines(extent: Extent) -> bool:
            height = extent.top - extent.bottom
            under = above is not None and self.next_to(extent, above, height, below=True)
            over = below is not None and self.next_to(extent, below, height, below=False)
            return under or over

        start = self.only_occurrence(self.ours[begin:end], beside_lines)
        if start is not None:
            self.take(begin, start, end - begin)

    @staticmethod
    def next_to(extent: Extent, line: Extent, height: float, below: bool) -> bool:
        """Whether `extent` lies within NEIGHBOUR_LINES lines below (or above) `line`, overlapping it horizontally."""
        gap = (line.bottom - extent.top) if below else (extent.bottom - line.top)
        overlaps = extent.x0 < line.x1 and extent.x1 > line.x0
        return overlaps and -0.5 * height <= gap <= NEIGHBOUR_LINES * height

    def place_runs(self, begin: int, end: int) -> None:
        """Places each unmatched run inside a line on the visual line of its matched neighbours, after
        the left one and before the right one, close to them (a caution sign or a footnote mark drawn
        apart) or with no other glyph between (a line number in the margin)."""
        position = begin
        while position < end:
            if self.match[position] >= 0:
                position += 1
                continue
            run_end = position
            while run_end < end and self.match[run_end] < 0:
                run_end += 1
            left = self.theirs_glyph[self.match[position - 1]] if position > begin else None
            right = self.theirs_glyph[self.match[run_end]] if run_end < end else None
            start = self.only_occurrence(
                self.ours[position:run_end], lambda extent: self.between(extent, left, right)
            )
            if start is not None:
                self.take(position, start, run_end - position)
            position = run_end

    def between(self, extent: Extent, left: int | None, right: int | None) -> bool:
        """Whether `extent` lies on the visual line of glyphs `left` and `right`, after the left one and
        before the right one, each within GAP_HEIGHTS font heights or with no other glyph between."""
        b = self.boxes
        for anchor in (left, right):
            if anchor is None:
                continue
            low, high = float(b[anchor, 4]), float(b[anchor, 5])
            smaller = min(extent.top - extent.bottom, high - low)
            if min(extent.top, high) - max(extent.bottom, low) < SAME_LINE_OVERLAP * smaller:
                return False
            if anchor == left:
                if extent.x0 < float(b[left, 0]):
                    return False
                gap = (float(b[left, 2]), extent.x0)
            else:
                if extent.x1 > float(b[right, 2]):
                    return False
                gap = (extent.x1, float(b[right, 0]))
            if gap[1] - gap[0] > GAP_HEIGHTS * (high - low) and self.glyphs_within(gap, extent):
                return False
        return True

    def glyphs_within(self, gap: tuple[float, float], extent: Extent) -> bool:
        """Whether any visible glyph lies horizontally inside `gap` on the visual line of `extent`."""
        b = self.boxes
        middle = (extent.bottom + extent.top) / 2
        inside = (b[:, 0] >= gap[0]) & (b[:, 2] <= gap[1]) & (b[:, 4] <= middle) & (b[:, 5] >= middle)
        return bool((inside & self.visible).any())

    def only_occurrence(self, run: str, fits) -> int | None:
        """The start of the one unmatched occurrence of `run` whose glyphs' extent `fits`, if exactly one does."""
        found: list[int] = []
        start = self.live.find(run)
        while start != -1 and len(found) <= 1:
            glyphs = self.theirs_glyph[start : start + len(run)]
            first = self.boxes[glyphs[0]]
            # A run of ours lies on one visual line (an occurrence across two is two pieces' ends).
            one_line = all(same_visual_line(self.boxes, g, float(first[4]), float(first[5])) for g in glyphs)
            if one_line and fits(Extent.of(self.boxes, glyphs)):
                found.append(start)
            start = self.live.find(run, start + 1)
        return found[0] if len(found) == 1 else None


def align(page_text: str, glyphs: PageGlyphs) -> Alignment:
    """Our page text mapped onto pdfium's glyphs of the same page (see the module docstring)."""
    ours, our_offsets = fold_text(page_text)
    order = reading_order(glyphs)
    theirs, positions = fold_text("".join(glyphs.text[g] for g in order))
    their_glyphs = [order[p] for p in positions]
    matcher = Matcher(ours, theirs, their_glyphs, glyphs)
    matcher.word_edges = (
        *word_edges(page_text, our_offsets),
        *word_edges(glyphs.text, their_glyphs),
    )
    matcher.run(line_ranges(page_text, our_offsets))
    matched = array("i", (their_glyphs[j] if j >= 0 else -1 for j in matcher.match))
    return Alignment(array("i", our_offsets), matched)
