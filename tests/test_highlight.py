"""Highlight boxes of answers on their PDF pages, and page geometry and images.

The alignment of our page text with pdfium's glyphs is tested on hand-made glyphs first (no PDF);
then on PDFs written by pdf_factory and on the real PDFs of ../shared, where the boxes are read
back with pdfium's own FPDFText_GetBoundedText: the text inside the boxes must be the span's.
"""

from __future__ import annotations

import io
import os
import random
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pdf_factory import (
    MARGIN,
    PAGE_HEIGHT,
    build_positioned_pdf,
    build_text_pdf,
    write_corrupt_pdf,
    write_encrypted_pdf,
    write_fake_pdf,
    write_text_pdf,
    write_two_column_pdf,
)

from spanqa.errors import ConfigError, DocumentError
from spanqa.indexing.formats.extraction import read_pages, read_pdf_page
from spanqa.indexing.pages.glyph_alignment import align
from spanqa.indexing.pages.glyphs import PageGlyphs
from spanqa.indexing.pages.highlight import HighlightBox, span_boxes
from spanqa.indexing.pages.pdf_pages import PdfPages

# -- hand-made glyphs ------------------------------------------------------------------------------

CHAR_WIDTH = 6.0
GLYPH_HEIGHT = 7.0


def draw(lines: list[tuple[float, float, str]], extra: list[tuple[float, float, str]] = ()):
    """Glyphs of `lines` (x, y, text) drawn in the order given (pdfium's order), then `extra` single
    glyphs; and where each drawn character went: {(line number, index in line): glyph}."""
    text: list[str] = []
    tight: list[tuple[float, float, float, float]] = []
    loose: list[tuple[float, float]] = []
    where: dict[tuple[int, int], int] = {}
    for number, (x, y, line) in enumerate([*lines, *extra]):
        for index, char in enumerate(line):
            left = x + index * CHAR_WIDTH
            if char == " ":
                tight.append((left, y, left, y))  # pdfium's spaces have no area
            else:
                tight.append((left, y, left + CHAR_WIDTH - 1, y + GLYPH_HEIGHT))
            loose.append((y - 2, y + GLYPH_HEIGHT + 1))
            where[(number, index)] = len(text)
            text.append(char)
    return PageGlyphs.from_boxes("".join(text), tight, loose), where


def bounded_text(glyphs: PageGlyphs, box: HighlightBox) -> str:
    """What pdfium's FPDFText_GetBoundedText takes from `box`: every glyph whose tight box overlaps it
    with positive area, in pdfium's order (whitespace left out)."""
    b = glyphs.boxes
    return "".join(
        glyphs.text[i]
        for i in range(len(glyphs.text))
        if b[i, 0] < box.x1 and b[i, 2] > box.x0 and b[i, 1] < box.y1 and b[i, 3] > box.y0
        and not glyphs.text[i].isspace()
    )  # fmt: skip


def glyph_of_each_character(page_text: str, glyphs: PageGlyphs) -> dict[int, int]:
    offsets, matched = align(page_text, glyphs).span(0, len(page_text))
    return {offset: glyph for offset, glyph in zip(offsets, matched) if glyph >= 0}


def expected_map(page_text: str, lines_in_reading_order: list[int], where: dict[tuple[int, int], int], lines):
    """Page offset -> the glyph drawn for it, for a page text that is `lines` in the given order."""
    expected = {}
    offset = 0
    for number in lines_in_reading_order:
        line = lines[number][2]
        for index, char in enumerate(line):
            if not char.isspace():
                expected[offset + index] = where[(number, index)]
        offset += len(line) + 1
    assert offset - 1 == len(page_text)
    return expected


LEFT = ["the quick brown fox", "jumps over the lazy", "dog and runs away"]
RIGHT = ["a second column here", "with other words in", "it than the first one"]


def two_columns(left: list[str], right: list[str]):
    """Lines of two columns, drawn row by row across them (as the IRS instructions are)."""
    lines = []
    for row in range(max(len(left), len(right))):
        if row < len(left):
            lines.append((50.0, 700.0 - 12 * row, left[row]))
        if row < len(right):
            lines.append((300.0, 700.0 - 12 * row, right[row]))
    reading = [i for i, line in enumerate(lines) if line[0] == 50.0]
    reading += [i for i, line in enumerate(lines) if line[0] == 300.0]
    return lines, reading


def test_interleaved_columns_align_each_character_to_its_own_glyph():
    lines, reading = two_columns(LEFT, RIGHT)
    glyphs, where = draw(lines)
    page_text = "\n".join(lines[i][2] for i in reading)
    assert glyph_of_each_character(page_text, glyphs) == expected_map(page_text, reading, where, lines)


def test_whitespace_and_stream_pieces_do_not_matter():
    # pdfium's text runs words together and spaces them apart where ours does not, and the first
    # row is drawn in two pieces, its end first.
    lines = [(50.0 + 9 * CHAR_WIDTH, 700.0, "brown   fox"), (50.0, 700.0, "thequick"), (50.0, 688.0, "jumpsover")]
    glyphs, where = draw(lines)
    page_text = "the quick brown fox\njumps over"
    mapping = glyph_of_each_character(page_text, glyphs)
    assert len(mapping) == len(page_text.replace(" ", "").replace("\n", ""))
    assert mapping[page_text.index("quick")] == where[(1, 3)]
    assert mapping[page_text.index("fox")] == where[(0, 8)]
    assert mapping[page_text.index("over")] == where[(2, 5)]
    boxes = span_boxes(page_text, glyphs, align(page_text, glyphs), page_text.index("quick"), len(page_text), 1)
    # Our first line is cut where pdfium's order runs back ("quick" is drawn after "brown fox").
    assert [bounded_text(glyphs, box) for box in boxes] == ["quick", "brownfox", "jumpsover"]


@pytest.mark.parametrize(
    ("drawn", "ours"),
    [("the \ufb01rst \ufb02oor", "the first floor"), ("the first floor", "the \ufb01rst \ufb02oor")],
)
def test_ligatures_match_their_letters(drawn, ours):
    glyphs, _ = draw([(50.0, 700.0, drawn)])
    alignment = align(ours, glyphs)
    assert alignment.aligned_share() == 1.0
    start = ours.index(" ") + 1
    end = ours.index(" ", start)
    boxes = span_boxes(ours, glyphs, alignment, start, end, 1)
    assert len(boxes) == 1
    nfkc = unicodedata.normalize
    assert nfkc("NFKC", bounded_text(glyphs, boxes[0])) == nfkc("NFKC", ours[start:end])


def test_repeated_lines_go_to_the_occurrence_in_their_column():
    left = ["Enter the amount", "from line 5 here", "30.", "then carry on"]
    right = ["Enter the amount", "from line 7 there", "and stop on line 30.", "done"]
    lines, reading = two_columns(left, right)
    glyphs, where = draw(lines)
    page_text = "\n".join(lines[i][2] for i in reading)
    assert glyph_of_each_character(page_text, glyphs) == expected_map(page_text, reading, where, lines)
    second = page_text.index("Enter the amount", 1)
    (box,) = span_boxes(page_text, glyphs, align(page_text, glyphs), second, second + 16, 1)
    assert box.x0 >= 300.0  # the right column's copy, not the left one's


def test_text_that_cannot_be_aligned_gets_no_box():
    glyphs, _ = draw([(50.0, 700.0, "real words here"), (50.0, 688.0, "and more")])
    page_text = "real words here\nGHOSTLY LINE\nand more"
    alignment = align(page_text, glyphs)
    ghost = page_text.index("GHOSTLY")
    assert span_boxes(page_text, glyphs, alignment, ghost, ghost + 12, 1) == []
    boxes = span_boxes(page_text, glyphs, alignment, 0, len(page_text), 1)
    assert [bounded_text(glyphs, box) for box in boxes] == ["realwordshere", "andmore"]


def test_a_foreign_glyph_inside_a_line_is_left_out_of_its_boxes():
    # A superscript "2" that our text does not have, drawn last, between "km" and "here".
    glyphs, _ = draw([(50.0, 700.0, "area km here")], extra=[(50.0 + 7 * CHAR_WIDTH + 2, 703.0, "2")])
    page_text = "area km here"
    start = page_text.index("km")
    boxes = span_boxes(page_text, glyphs, align(page_text, glyphs), start, len(page_text), 1)
    assert [bounded_text(glyphs, box) for box in boxes] == ["km", "here"]


def test_highlight_box_json():
    assert HighlightBox(3, 1.0, 2.0, 3.0, 4.0).to_json() == {"page": 3, "x0": 1.0, "y0": 2.0, "x1": 3.0, "y1": 4.0}


# -- PDFs written here -----------------------------------------------------------------------------


def normalized(text: str) -> str:
    # pdfium reads a hyphen that ends a line as U+0002 (or U+FFFE); ligatures NFKC-fold to letters.
    text = text.replace("\x02", "-").replace("\ufffe", "-")
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def read_back(path: Path, page: int, boxes: list[HighlightBox]) -> list[str]:
    """The text pdfium finds inside each box (pypdfium2 get_text_bounded), normalised."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        textpage = pdf[page - 1].get_textpage()
        return [normalized(textpage.get_text_bounded(b.x0, b.y0, b.x1, b.y1)) for b in boxes]
    finally:
        pdf.close()


def word_spans(text: str, rng: random.Random, count: int) -> list[tuple[int, int]]:
    """`count` spans of whole words of `text`: 1 to 30 words, many crossing line breaks."""
    words = [match.span() for match in re.finditer(r"\S+", text)]
    spans = []
    for _ in range(count):
        first = rng.randrange(len(words))
        last = min(len(words) - 1, first + rng.choice([0, 0, 1, 2, 4, 7, 14, 29]))
        spans.append((words[first][0], words[last][1]))
    return spans


def lines_covered(text: str, start: int, end: int) -> int:
    return sum(1 for line in text[start:end].split("\n") if line.strip() != "")


WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
    "upsilon phi chi psi omega information document answer passage highlight reader column page"
).split()


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


LEFT_LINES = 40
RIGHT_LINES = 38


@pytest.fixture(scope="module")
def generated_pdfs(tmp_path_factory) -> dict[str, Path]:
    rng = random.Random(7)
    folder = tmp_path_factory.mktemp("highlight")
    paragraphs = ["\n".join(sentence(rng, 60) for _ in range(3)) for _ in range(2)]
    left = [sentence(rng, 6) for _ in range(LEFT_LINES)]
    right = [sentence(rng, 6) for _ in range(RIGHT_LINES)]
    return {
        "single": write_text_pdf(folder / "single.pdf", ["\n\n".join(paragraphs)]),
        "columns": write_two_column_pdf(folder / "columns.pdf", left, right, title="Two columns drawn row by row"),
    }


def column_break(text: str) -> tuple[int, int]:
    """The span from the last word of the left column to the first word of the right one (our page
    text reads the columns one after another; pdfium's order interleaves them line by line)."""
    lines = text.split("\n")
    first_right = 2 + LEFT_LINES  # the title, a blank line, then the left column
    assert lines[1] == "" and all(line.strip() for line in lines[2:])
    last_left_end = len("\n".join(lines[:first_right]))
    start = text.rindex(" ", 0, last_left_end) + 1
    return start, text.index(" ", last_left_end + 1)


@pytest.mark.parametrize("name", ["single", "columns"])
def test_boxes_read_back_as_the_span_on_generated_pdfs(generated_pdfs, name):
    path = generated_pdfs[name]
    pages = PdfPages()
    rng = random.Random(11)
    (text,) = read_pages(path)
    spans = word_spans(text, rng, 150) + [(0, len(text))]
    if name == "columns":
        spans.append(column_break(text))
    for start, end in spans:
        boxes = pages.boxes(path, 1, start, end)
        assert " ".join(read_back(path, 1, boxes)) == normalized(text[start:end]), (start, end)
        assert len(boxes) == lines_covered(text, start, end)
        assert all(box.page == 1 and box.x0 < box.x1 and box.y0 < box.y1 for box in boxes)


def test_column_break_span_has_one_box_in_each_column(generated_pdfs):
    path = generated_pdfs["columns"]
    start, end = column_break(read_pages(path)[0])
    boxes = PdfPages().boxes(path, 1, start, end)
    assert len(boxes) == 2 and boxes[0].x1 < 612 / 2 < boxes[1].x0
    assert boxes[1].y1 > boxes[0].y1  # the right column starts at the top again


def test_known_word_position(tmp_path):
    # "Highlight" drawn in Helvetica 10 pt with its baseline starting at (100, 500), another word to its right.
    path = tmp_path / "word.pdf"
    path.write_bytes(build_positioned_pdf([[(100, 500, "Highlight"), (100, 480, "second line"), (300, 500, "Right")]]))
    text = read_pages(path)[0]
    start = text.index("Highlight")
    (box,) = PdfPages().boxes(path, 1, start, start + len("Highlight"))
    assert 100 <= box.x0 <= 101.5  # starts at x (plus the H's side bearing)
    assert 137 <= box.x1 <= 139.5  # "Highlight" is 38.9 pt wide in Helvetica 10 pt
    assert 497 <= box.y0 < 500 < 507 < box.y1 <= 510  # the descent below the baseline, the ascent above
    assert read_back(path, 1, [box]) == ["Highlight"]
    # The read-back test is meaningful: pdfium takes every glyph the box overlaps, however little (a
    # box reaching 1 pt into "Right" reads its "R"), but not one it only touches.
    wider = HighlightBox(1, box.x0, box.y0, 301.0, box.y1)
    assert read_back(path, 1, [wider]) == ["Highlight R"]
    right_edge = left_edge_of(path, "Right")
    touching = HighlightBox(1, box.x0, box.y0, right_edge, box.y1)
    assert read_back(path, 1, [touching]) == ["Highlight"]


def left_edge_of(path: Path, word: str) -> float:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        textpage = pdf[0].get_textpage()
        return textpage.get_charbox(textpage.get_text_range().index(word))[0]
    finally:
        pdf.close()


def test_second_answer_on_a_page_reuses_the_page(generated_pdfs, monkeypatch):
    import spanqa.indexing.pages.pdf_pages as pdf_pages

    calls = []
    real = pdf_pages.read_glyphs
    monkeypatch.setattr(pdf_pages, "read_glyphs", lambda textpage: calls.append(1) or real(textpage))
    pages = PdfPages()
    path = generated_pdfs["single"]
    first = pages.boxes(path, 1, 0, 20)
    second = pages.boxes(path, 1, 30, 60)
    assert len(calls) == 1 and first and second


def test_concurrent_calls_agree_with_sequential_ones(generated_pdfs):
    pages = PdfPages()
    jobs = [("boxes", name, start) for name in ("single", "columns") for start in range(0, 400, 40)]
    jobs += [("png", name, 0) for name in ("single", "columns")] * 3

    def run(job):
        kind, name, start = job
        path = generated_pdfs[name]
        if kind == "png":
            return pages.render_png(path, 1, 200)
        return pages.boxes(path, 1, start, start + 35)

    sequential = [run(job) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(run, jobs * 2)) == sequential * 2


def test_non_pdf_files_have_no_boxes(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("some notes\fsecond page")
    pages = PdfPages()
    assert pages.boxes(notes, 1, 0, 4) == []
    assert pages.page_count(notes) == 2
    assert pages.page_text(notes, 2) == "second page"
    with pytest.raises(DocumentError, match="not a PDF"):
        pages.geometry(notes, 1)
    with pytest.raises(DocumentError, match="not a PDF"):
        pages.render_png(notes, 1, 100)


def test_page_text_is_the_indexed_page_text(tmp_path):
    path = write_text_pdf(tmp_path / "three.pdf", ["first page text", "second page, more text", "third"])
    encrypted = write_encrypted_pdf(tmp_path / "locked.pdf", ["secret page", "another"], user_password="ankh")
    assert [read_pdf_page(path, n) for n in (1, 2, 3)] == read_pages(path)
    assert read_pdf_page(encrypted, 2, ["ankh"]) == read_pages(encrypted, password="ankh")[1]
    assert PdfPages().page_text(path, 2) == read_pages(path)[1]


# -- geometry and images ---------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def test_geometry_and_image_of_a_letter_page(generated_pdfs):
    pages = PdfPages()
    path = generated_pdfs["single"]
    geometry = pages.geometry(path, 1)
    assert (geometry.width, geometry.height, geometry.rotation) == (612, 792, 0)
    assert (geometry.x0, geometry.y0, geometry.x1, geometry.y1) == (0, 0, 612, 792)
    assert geometry.to_json()["box"] == {"x0": 0, "y0": 0, "x1": 612, "y1": 792}
    assert pages.page_count(path) == 1
    assert png_size(pages.render_png(path, 1, 306)) == (306, 396)
    assert png_size(pages.render_png(path, 1, 100_000))[0] == pages_max_width()


def pages_max_width() -> int:
    from spanqa import defaults

    return defaults.PAGE_IMAGE_MAX_WIDTH


def test_rotated_page_turns_geometry_and_image(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(build_text_pdf(["a page turned on its side"]))))
    writer.pages[0].rotate(90)
    path = tmp_path / "rotated.pdf"
    with path.open("wb") as handle:
        writer.write(handle)
    pages = PdfPages()
    geometry = pages.geometry(path, 1)
    assert geometry.rotation == 90
    assert (geometry.width, geometry.height) == (792, 612)
    assert (geometry.x1 - geometry.x0, geometry.y1 - geometry.y0) == (612, 792)  # the box is not turned
    width, height = png_size(pages.render_png(path, 1, 400))
    assert (width, height) == (400, round(400 * 612 / 792))
    # Boxes stay in the page's own (unturned) user space.
    text = read_pages(path)[0]
    (box,) = pages.boxes(path, 1, text.index("page"), text.index("page") + 4)
    assert MARGIN < box.x0 < 612 / 2 and PAGE_HEIGHT - 2 * MARGIN < box.y0 < PAGE_HEIGHT


# -- errors ----------------------------------------------------------------------------------------


def test_errors_name_the_problem(tmp_path, generated_pdfs):
    pages = PdfPages()
    path = generated_pdfs["single"]
    with pytest.raises(ConfigError, match="page=0"):
        pages.boxes(path, 0, 0, 1)
    with pytest.raises(ConfigError, match="page=2 is out of range"):
        pages.boxes(path, 2, 0, 1)
    with pytest.raises(ConfigError, match="page=5 is out of range"):
        pages.render_png(path, 5, 100)
    with pytest.raises(ConfigError, match="width_px=0"):
        pages.render_png(path, 1, 0)
    with pytest.raises(ConfigError, match="not a span"):
        pages.boxes(path, 1, 10, 10**6)
    with pytest.raises(ConfigError, match="start=-1"):
        pages.boxes(path, 1, -1, 5)
    with pytest.raises(DocumentError, match="no such file"):
        pages.boxes(tmp_path / "missing.pdf", 1, 0, 1)
    with pytest.raises(DocumentError, match="not a PDF"):
        pages.boxes(write_fake_pdf(tmp_path / "fake.pdf"), 1, 0, 1)
    with pytest.raises(DocumentError, match="corrupt PDF"):
        pages.geometry(write_corrupt_pdf(tmp_path / "corrupt.pdf"), 1)
    with pytest.raises(DocumentError, match="changed since it was indexed"):
        pages.boxes(path, 1, 0, 5, expected_text="words that are not there")


def test_encrypted_pdf_needs_its_password(tmp_path):
    path = write_encrypted_pdf(tmp_path / "locked.pdf", ["the secret answer is here"], user_password="ankh")
    with pytest.raises(DocumentError, match="password needed"):
        PdfPages().boxes(path, 1, 0, 3)
    with pytest.raises(DocumentError, match="wrong password"):
        PdfPages().geometry(path, 1, password="nope")
    text = read_pages(path, password="ankh")[0]
    start = text.index("answer")
    for pages, password in ((PdfPages(), "ankh"), (PdfPages(passwords=["ankh"]), None)):
        boxes = pages.boxes(path, 1, start, start + 6, password=password)
        assert read_back_encrypted(path, "ankh", boxes) == ["answer"]
    # What one caller opened with the password stays closed to the next caller without it.
    pages = PdfPages()
    assert pages.boxes(path, 1, start, start + 6, password="ankh")
    with pytest.raises(DocumentError, match="password needed"):
        pages.boxes(path, 1, start, start + 6)
    with pytest.raises(DocumentError, match="password needed"):
        pages.render_png(path, 1, 100)


def read_back_encrypted(path: Path, password: str, boxes: list[HighlightBox]) -> list[str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path), password=password)
    try:
        textpage = pdf[0].get_textpage()
        return [normalized(textpage.get_text_bounded(b.x0, b.y0, b.x1, b.y1)) for b in boxes]
    finally:
        pdf.close()


def test_a_file_changed_on_disk_is_read_again(tmp_path):
    path = write_text_pdf(tmp_path / "doc.pdf", ["alpha beta gamma"])
    pages = PdfPages()
    first = pages.boxes(path, 1, 6, 10)
    assert read_back(path, 1, first) == ["beta"]
    assert pages.geometry(path, 1).width == 612
    status = path.stat()
    write_text_pdf(path, ["one two three four five six seven"])
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
    text = read_pages(path)[0]
    start = text.index("three")
    second = pages.boxes(path, 1, start, start + 5)
    assert read_back(path, 1, second) == ["three"]
    assert pages.page_text(path, 1) == text


# -- the real PDFs of ../shared --------------------------------------------------------------------

REAL_PAGES = {
    "text/irs_i1040nr_instructions.pdf": [3, 5, 10, 20, 30],
    "multicolumn/federal_register_2020_17221.pdf": [1, 2, 4, 6],
    "multicolumn/latex_two_column_lorem.pdf": [1, 2, 3],
    "multicolumn/naacl06_shinyama_paper.pdf": [1, 3, 5, 7],
    "text/siege_of_vicksburg_ocr_scan.pdf": [1, 2, 4],
}
SPANS_PER_PAGE = 30
MIN_EXACT_SHARE = 0.98


def no_space(text: str) -> str:
    return re.sub(r"\s+", "", normalized(text))


@pytest.mark.parametrize("name", sorted(REAL_PAGES))
def test_boxes_read_back_on_real_pdfs(shared_data_dir, name):
    path = shared_data_dir / "pdfs" / name
    pages = PdfPages()
    rng = random.Random(2024)
    counts = {"exact": 0, "exact_spacing": 0, "partial": 0, "none": 0, "wrong": 0}
    wrong = []
    for page in REAL_PAGES[name]:
        text = read_pdf_page(path, page)
        for start, end in word_spans(text, rng, SPANS_PER_PAGE):
            boxes = pages.boxes(path, page, start, end)
            parts = read_back(path, page, boxes)
            want = no_space(text[start:end])
            if no_space(" ".join(parts)) == want:
                counts["exact"] += 1
                counts["exact_spacing"] += " ".join(parts) == normalized(text[start:end])
            elif not boxes:
                counts["none"] += 1
            elif piecewise_in(parts, want):
                counts["partial"] += 1  # fewer boxes: each still reads back a piece of the span, in order
            else:
                counts["wrong"] += 1
                wrong.append((page, start, end, text[start:end][:80], parts))
    total = len(REAL_PAGES[name]) * SPANS_PER_PAGE
    print(f"\n{name}: {counts} of {total}: exact (whitespace aside) {counts['exact'] / total:.1%}")
    assert wrong == []
    assert counts["exact"] / total >= MIN_EXACT_SHARE


def piecewise_in(parts: list[str], want: str) -> bool:
    """Whether the boxes' texts are pieces of the span's text, in order (whitespace aside)."""
    position = 0
    for part in parts:
        found = want.find(no_space(part), position)
        if found == -1:
            return False
        position = found + len(no_space(part))
    return True
