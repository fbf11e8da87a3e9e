"""Reading order of PDF pages: column detection on fragments, and on real (generated) two-column PDFs."""

from __future__ import annotations

import pytest
from pdf_factory import write_text_pdf, write_two_column_pdf

from spanqa.indexing import read_pages
from spanqa.indexing.layout import Fragment, page_text


def line(text: str, x: float, y: float, height: float = 10.0, char_width: float = 5.0) -> Fragment:
    return Fragment(text=text, x0=x, x1=x + char_width * len(text), y=y, height=height)


def two_columns(rows: int) -> list[Fragment]:
    """Rows drawn across both columns in turn (the stream order of interleaving typesetters)."""
    fragments = []
    for row in range(rows):
        y = 700 - 12 * row
        fragments.append(line(f"left {row} words here", 50, y))
        fragments.append(line(f"right {row} words here", 320, y))
    return fragments


def test_two_columns_read_one_after_the_other():
    text = page_text(two_columns(6))
    lines = text.split("\n")
    assert lines == [f"left {r} words here" for r in range(6)] + [f"right {r} words here" for r in range(6)]


def test_full_width_title_comes_first_then_columns():
    fragments = [line("A title that runs across the whole page width here", 50, 760), *two_columns(5)]
    text = page_text(fragments)
    assert text.startswith("A title that runs across the whole page width here\n\nleft 0")
    assert text.index("left 4") < text.index("right 0")


def test_single_column_keeps_line_order_and_joins_words_on_a_line():
    fragments = [
        Fragment("Hello", 50, 75, 700, 10),
        Fragment("world,", 78, 110, 700, 10),
        Fragment("again.", 50, 80, 688, 10),
    ]
    assert page_text(fragments) == "Hello world,\nagain."


def test_fragments_of_one_word_join_without_a_space():
    # TJ arrays with kerning draw a word in pieces that touch.
    fragments = [Fragment("Ker", 50, 65, 700, 10), Fragment("ning", 65.2, 85, 700, 10)]
    assert page_text(fragments) == "Kerning"


def test_narrow_table_columns_are_read_row_by_row():
    fragments = []
    for row in range(6):
        y = 700 - 12 * row
        fragments += [line(f"State{row}", 50, y), line(f"{row}1", 200, y), line(f"{row}2", 260, y)]
    text = page_text(fragments)
    assert text.split("\n")[0] == "State0 01 02"


def test_a_paragraph_gap_becomes_a_blank_line():
    fragments = [line("First paragraph.", 50, 700), line("Second paragraph.", 50, 660)]
    assert page_text(fragments) == "First paragraph.\n\nSecond paragraph."


def test_empty_page_is_empty():
    assert page_text([]) == ""
    assert page_text([Fragment("   ", 0, 10, 10, 10)]) == ""


def test_interleaved_two_column_pdf_reads_column_by_column(tmp_path):
    left = [f"left column line {i} tells alpha{i}" for i in range(10)]
    right = [f"right column line {i} tells beta{i}" for i in range(10)]
    path = write_two_column_pdf(tmp_path / "columns.pdf", left, right, title="The Title Across The Page")
    [text] = read_pages(path)
    assert [ln for ln in text.split("\n") if ln.strip()] == ["The Title Across The Page", *left, *right]
    # pypdf's stream order interleaves the columns; layout=False keeps that order.
    [plain] = read_pages(path, layout=False)
    assert "alpha0 right column line 0" in " ".join(plain.split())


@pytest.mark.parametrize("interleave", [True, False])
def test_column_order_does_not_depend_on_stream_order(tmp_path, interleave):
    left = [f"l{i} one two three four five six" for i in range(6)]
    right = [f"r{i} one two three four five six" for i in range(6)]
    [text] = read_pages(write_two_column_pdf(tmp_path / "c.pdf", left, right, interleave=interleave))
    assert text.index("l5 ") < text.index("r0 ")


def test_plain_single_column_pdf_reads_as_before(tmp_path):
    page = "A first sentence of the page. " * 12 + "\n\nAnother paragraph follows here."
    [layout] = read_pages(write_text_pdf(tmp_path / "one.pdf", [page]))
    [plain] = read_pages(tmp_path / "one.pdf", layout=False)
    assert layout.split() == plain.split() == page.split()
