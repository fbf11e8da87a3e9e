"""Sentence splitting and chunking: pure span arithmetic (`spanqa.indexing.ingest.spans`). The PageChunker
component is tested with the converter in test_indexing_components.py."""

from __future__ import annotations

import random
import re

import pytest

from spanqa.errors import ConfigError
from spanqa.indexing.ingest.spans import chunk_spans, sentence_spans


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in sentence_spans(text)]


def chunk_texts(text: str, max_words: int, overlap_words: int) -> list[str]:
    return [text[start:end] for start, end in chunk_spans(text, max_words, overlap_words)]


def word_positions(text: str) -> list[tuple[int, int]]:
    return [(match.start(), match.end()) for match in re.finditer(r"\S+", text)]


def random_prose(seed: int, sentence_count: int) -> str:
    """Sentences of 1 to 30 words (capitalised, so each period ends one), some paragraph breaks."""
    rng = random.Random(seed)
    parts = []
    for index in range(sentence_count):
        length = rng.randint(1, 30)
        sentence = " ".join(f"W{index}x{word}" for word in range(length)) + rng.choice([".", "!", "?"])
        parts.append(sentence)
        parts.append(rng.choice([" ", " ", " ", "\n", "\n\n"]))
    return "".join(parts)


# sentence_spans


def test_sentence_spans_known_answer():
    text = "Aurora was founded in 1984. It moved to Trondheim! Did it grow? Yes."
    assert sentences(text) == ["Aurora was founded in 1984.", "It moved to Trondheim!", "Did it grow?", "Yes."]


def test_sentence_spans_do_not_split_abbreviations_initials_or_lowercase_continuations():
    text = (
        "Dr. Okafor met J. R. Smith at 9 a.m. on Jan. 5 in the U.S. and said hello. "
        "Prices rose approx. 5 percent, e.g. for tomatoes. The end."
    )
    assert sentences(text) == [
        "Dr. Okafor met J. R. Smith at 9 a.m. on Jan. 5 in the U.S. and said hello.",
        "Prices rose approx. 5 percent, e.g. for tomatoes.",
        "The end.",
    ]


def test_sentence_spans_keep_closing_quotes_and_brackets_with_the_sentence():
    text = 'Our motto is "Built for the long road." Every employee knows it. (It is old.) New sentence.'
    assert sentences(text) == [
        'Our motto is "Built for the long road."',
        "Every employee knows it.",
        "(It is old.)",
        "New sentence.",
    ]


def test_sentence_spans_break_at_blank_lines_list_items_and_headings():
    text = "# Tomatoes\nNo period here\n\nNext paragraph\n- first item\n- second item\n1. numbered item"
    assert sentences(text) == [
        "# Tomatoes",
        "No period here",
        "Next paragraph",
        "- first item",
        "- second item",
        "1. numbered item",
    ]


def test_sentence_spans_join_wrapped_lines_of_one_sentence():
    text = "The light has a range of\n19 nautical miles. Its characteristic is two\nwhite flashes."
    assert sentences(text) == [
        "The light has a range of\n19 nautical miles.",
        "Its characteristic is two\nwhite flashes.",
    ]


def test_sentence_spans_treat_pdf_blank_lines_with_spaces_as_paragraph_breaks():
    text = "Heading\n \nFirst paragraph"
    assert sentences(text) == ["Heading", "First paragraph"]


def test_sentence_spans_cover_every_non_whitespace_character_once():
    for seed in range(5):
        text = "  " + random_prose(seed, 60) + "  \n"
        spans = sentence_spans(text)
        covered = [False] * len(text)
        for start, end in spans:
            assert text[start:end] == text[start:end].strip()
            for position in range(start, end):
                assert not covered[position]
                covered[position] = True
        assert all(covered[i] or text[i].isspace() for i in range(len(text)))
        assert spans == sorted(spans)


def test_sentence_spans_of_empty_or_blank_text():
    assert sentence_spans("") == []
    assert sentence_spans(" \n\t ") == []


# chunk_spans


def test_chunk_spans_known_answer():
    text = "One two three. Four five six. Seven eight nine. Ten eleven."
    assert chunk_texts(text, max_words=6, overlap_words=3) == [
        "One two three. Four five six.",
        "Four five six. Seven eight nine.",
        "Seven eight nine. Ten eleven.",
    ]


def test_chunk_spans_without_overlap_partition_the_words():
    text = "One two three. Four five six. Seven eight nine. Ten eleven."
    assert chunk_texts(text, max_words=6, overlap_words=0) == [
        "One two three. Four five six.",
        "Seven eight nine. Ten eleven.",
    ]


def test_short_text_is_one_chunk_without_surrounding_whitespace():
    text = "\n  A short page. Only two sentences.  \n"
    assert chunk_spans(text, 200, 40) == [(3, 36)]


def test_chunk_spans_of_empty_text():
    assert chunk_spans("", 10, 2) == []
    assert chunk_spans(" \n \f ", 10, 2) == []


@pytest.mark.parametrize(("max_words", "overlap_words"), [(200, 40), (50, 10), (20, 0), (7, 6), (1, 0)])
def test_chunks_cover_all_words_within_max_words(max_words, overlap_words):
    for seed in range(4):
        text = random_prose(seed, 80)
        spans = chunk_spans(text, max_words, overlap_words)
        words = word_positions(text)
        covered = set()
        for start, end in spans:
            inside = [index for index, (first, last) in enumerate(words) if start <= first and last <= end]
            assert 1 <= len(inside) <= max_words
            # A chunk starts at a word's first character and ends at a word's last: no word is cut.
            assert (start, words[inside[0]][1]) == words[inside[0]]
            assert words[inside[-1]][1] == end
            covered.update(inside)
        assert covered == set(range(len(words)))
        starts = [start for start, _ in spans]
        assert starts == sorted(set(starts)), "chunks must advance"


def test_chunks_end_at_sentence_boundaries_and_overlap_by_whole_sentences():
    text = random_prose(7, 120)
    sentence_list = sentence_spans(text)
    sentence_starts = {start for start, _ in sentence_list}
    sentence_ends = {end for _, end in sentence_list}
    spans = chunk_spans(text, 60, 15)
    assert len(spans) > 3
    for (start, end), (next_start, _) in zip(spans, spans[1:]):
        # No sentence in this text is longer than 30 words, so every cut falls between sentences...
        assert end in sentence_ends
        shared_words = len(text[next_start:end].split())
        if next_start in sentence_starts:
            # ...and consecutive chunks share whole trailing sentences, at most overlap_words words of them...
            assert 0 < shared_words <= 15
        else:
            # ...unless the last sentence alone is longer than the overlap: then its last 15 words.
            last_sentence = next(text[s:e] for s, e in sentence_list if e == end)
            assert len(last_sentence.split()) > 15 and shared_words == 15


def test_overlap_is_about_overlap_words():
    text = random_prose(3, 200)
    spans = chunk_spans(text, 100, 30)
    shared = [len(text[next_start:end].split()) for (_, end), (next_start, _) in zip(spans, spans[1:])]
    assert sum(shared) / len(shared) > 10  # whole sentences of up to 30 words fit in the 30-word window


def test_long_sentence_is_split_between_words_with_word_overlap():
    text = " ".join(f"w{i}" for i in range(25)) + "."
    assert chunk_texts(text, max_words=10, overlap_words=3) == [
        " ".join(f"w{i}" for i in range(0, 10)),
        " ".join(f"w{i}" for i in range(7, 17)),
        " ".join(f"w{i}" for i in range(14, 24)),
        " ".join(f"w{i}" for i in range(21, 25)) + ".",
    ]


def test_short_sentence_before_a_long_one_does_not_become_a_stub_chunk():
    text = "Short one. " + " ".join(f"w{i}" for i in range(30)) + "."
    first = chunk_texts(text, max_words=10, overlap_words=2)[0]
    assert len(first.split()) == 10


def test_chunk_offsets_map_back_into_the_text():
    text = "Line one.\n \nLine two has   odd  spacing.\r\nAnd CRLF line ends. Tabs\there."
    for start, end in chunk_spans(text, 4, 1):
        chunk = text[start:end]
        assert chunk == chunk.strip() and chunk != ""


def test_chunk_spans_is_deterministic():
    text = random_prose(11, 150)
    assert chunk_spans(text, 50, 12) == chunk_spans(text, 50, 12)


@pytest.mark.parametrize(
    ("max_words", "overlap_words"), [(0, 0), (-5, 0), (10, 10), (10, 11), (10, -1), (2.5, 0), (True, 0)]
)
def test_bad_chunk_settings_raise_config_error(max_words, overlap_words):
    with pytest.raises(ConfigError):
        chunk_spans("Some text.", max_words, overlap_words)


# Token-weighted chunks and context chunks


def test_weighted_chunks_respect_the_unit_budget():
    text = random_prose(12, 120)
    words = word_positions(text)
    weights = [1 + (len(text[s:e]) // 4) for s, e in words]
    for start, end in chunk_spans(text, 40, 8, weights):
        inside = [i for i, (s, e) in enumerate(words) if start <= s and e <= end]
        assert sum(weights[i] for i in inside) <= 40 or len(inside) == 1


def test_unit_weights_are_the_word_count():
    text = random_prose(4, 80)
    assert chunk_spans(text, 30, 6) == chunk_spans(text, 30, 6, [1] * len(word_positions(text)))


def test_context_chunks_partition_cores_and_widen_them_within_the_margin():
    from spanqa.indexing.ingest.spans import context_chunk_spans

    for seed in range(4):
        text = random_prose(seed, 100)
        words = word_positions(text)
        pairs = context_chunk_spans(text, 50, 12)
        cores = [core for core, _ in pairs]
        assert cores == chunk_spans(text, 50, 0)  # the cores partition the words
        for (core_start, core_end), (start, end) in pairs:
            assert start <= core_start < core_end <= end
            before = [w for w in words if start <= w[0] and w[1] <= core_start]
            after = [w for w in words if core_end <= w[0] and w[1] <= end]
            assert len(before) <= 12 and len(after) <= 12
        assert pairs[0][1][0] == pairs[0][0][0] and pairs[-1][1][1] == pairs[-1][0][1]


def test_context_chunks_widen_by_whole_sentences_where_they_fit():
    from spanqa.indexing.ingest.spans import context_chunk_spans

    text = "One two three. Four five six. Seven eight nine. Ten eleven."
    assert [(text[c[0]:c[1]], text[s[0]:s[1]]) for c, s in context_chunk_spans(text, 6, 3)] == [
        ("One two three. Four five six.", "One two three. Four five six. Seven eight nine."),
        ("Seven eight nine. Ten eleven.", "Four five six. Seven eight nine. Ten eleven."),
    ]
