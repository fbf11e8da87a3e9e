"""Cleaning page text without losing offsets: every cleaned span maps back to its page-text span."""

from __future__ import annotations

import random

from spanqa.indexing.formats.cleaning import CleanPage, clean_page, clean_pages, raw_span_of, running_lines, same_text


def check_map(raw: str, page: CleanPage) -> None:
    """Every cleaned character comes from a raw character that is the same or a space for a newline."""
    for offset, char in enumerate(page.text):
        source = raw[page.to_raw(offset)]
        assert source == char or (char == " " and source == "\n"), (offset, char, source)
    positions = [page.to_raw(offset) for offset in range(len(page.text))]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_hyphenated_word_across_a_line_break_is_joined():
    raw = "The infor-\nmation desk is open.\n"
    page = clean_page(raw)
    assert page.text == "The information desk is open.\n"
    check_map(raw, page)
    start = page.text.index("information")
    assert page.raw_span(start, start + len("information")) == (4, 4 + len("infor-\nmation"))


def test_hyphen_before_a_capital_or_digit_is_kept():
    raw = "See Form-\n1040 and Anglo-\nSaxon texts."
    assert clean_page(raw).text == "See Form- 1040 and Anglo- Saxon texts."


def test_lines_of_a_paragraph_are_joined_but_paragraphs_lists_and_headings_are_not():
    raw = "# Heading\nFirst line of a\nparagraph.\n\nNext paragraph:\n- item one\n- item two\n"
    page = clean_page(raw)
    assert page.text == "# Heading\nFirst line of a paragraph.\n\nNext paragraph:\n- item one\n- item two\n"
    assert len(page.text) == len(raw)  # one-for-one replacements only: no piece boundaries
    assert page.clean_starts == (0,)


def test_running_headers_and_footers_are_dropped():
    topics = ["wages", "interest", "dividends", "refunds", "alimony", "business", "gains", "pensions", "rents"]
    pages = [
        f"Instructions for Form 1040NR   Page {n} of 9\nBody text on {topic} says something.\n"
        f"More about {topic}.\n- {n} -\n"
        for n, topic in enumerate(topics, start=1)
    ]
    assert running_lines(pages) == {"instructions for form #nr page # of #", "- # -"}
    cleaned = clean_pages(pages)
    for raw, page in zip(pages, cleaned):
        assert "Instructions" not in page.text and "- " not in page.text
        assert page.text.startswith("Body text")
        check_map(raw, page)
        start = page.text.index("says")
        raw_start, raw_end = page.raw_span(start, start + 4)
        assert raw[raw_start:raw_end] == "says"


def test_a_line_repeated_on_few_pages_is_kept():
    pages = ["Header\nText one.", "Other\nText two.", "Other2\nText three.", "Header\nText four.", "x\nText five.", "y\nz"]
    assert "header" not in running_lines(pages)


def test_short_documents_keep_their_first_lines():
    assert running_lines(["Title\nText", "Title\nMore"]) == set()


def test_random_pages_map_back_exactly():
    rng = random.Random(3)
    words = ["alpha", "beta-", "gamma", "Delta", "infor-", "mation", "x", "-", "1.", "#"]
    for _ in range(30):
        raw = "".join(rng.choice(words) + rng.choice([" ", "\n", "\n\n", " \n"]) for _ in range(60))
        page = clean_page(raw)
        check_map(raw, page)
        for _ in range(20):
            start = rng.randrange(len(page.text))
            end = rng.randrange(start, len(page.text)) + 1
            raw_start, raw_end = page.raw_span(start, end)
            assert same_text(raw[raw_start:raw_end], page.text[start:end])
            # The compact per-chunk map gives the same answer as the page map.
            pieces = page.pieces(start, end)
            for offset in range(start, end):
                assert raw_span_of(pieces, offset - start, offset - start + 1) == page.raw_span(offset, offset + 1)


def test_identity_page():
    page = CleanPage.identity("Just text.")
    assert page.raw_span(5, 9) == (5, 9)
    assert page.pieces(2, 6) == [[0, 2]]
