"""Known-answer tests of the pure span-decoding functions (numpy only, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from spanqa.reader.decoding import (
    NO_WORD,
    SCORE_CALIBRATION,
    SpanCandidates,
    best_spans,
    comparable_score,
    span_log_probabilities,
    word_aligned_char_spans,
)

# A window laid out like [CLS] q q [SEP] p p p p p p [SEP] [PAD] [PAD]: passage tokens 4..9.
WINDOW_LENGTH = 13
PASSAGE = np.zeros(WINDOW_LENGTH, dtype=bool)
PASSAGE[4:10] = True


def pairs(first: np.ndarray, second: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(first.tolist(), second.tolist(), strict=True))


def spans_as_tuples(candidates: SpanCandidates) -> list[tuple[int, int, int]]:
    return list(zip(candidates.window.tolist(), candidates.start.tolist(), candidates.end.tolist(), strict=True))


def brute_force_spans(start, end, allowed, max_answer_length, top_n):
    """Reference: every (i, j) of the outer sum, masked, sorted by (-score, start, end)."""
    length = start.shape[0]
    scores = start[:, None] + end[None, :]
    i, j = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    valid = allowed[:, None] & allowed[None, :] & (j >= i) & (j - i + 1 <= max_answer_length)
    starts, ends = i[valid], j[valid]
    values = scores[valid]
    order = np.lexsort((ends, starts, -values))[:top_n]
    return list(zip(starts[order].tolist(), ends[order].tolist(), strict=True)), values[order]


class TestBestSpans:
    def test_question_special_and_padding_tokens_are_never_chosen(self):
        start = np.zeros(WINDOW_LENGTH)
        end = np.zeros(WINDOW_LENGTH)
        # The highest logits sit on [CLS], question tokens, [SEP] and padding.
        start[[0, 1, 2, 3, 10, 11, 12]] = 100.0
        end[[0, 1, 2, 3, 10, 11, 12]] = 100.0
        start[5], end[6] = 1.0, 1.0

        spans = best_spans(start, end, PASSAGE, max_answer_length=15, top_n=50)

        assert (spans.start[0], spans.end[0]) == (5, 6)
        assert PASSAGE[spans.start].all() and PASSAGE[spans.end].all()
        assert len(spans) == 6 * 7 // 2  # every span of the 6 passage tokens, nothing else

    def test_end_never_before_start(self):
        start = np.full(WINDOW_LENGTH, -5.0)
        end = np.full(WINDOW_LENGTH, -5.0)
        start[8], end[5] = 10.0, 10.0  # the best "span" (8, 5) would run backwards: 20
        start[5], end[8] = 1.0, 1.0

        spans = best_spans(start, end, PASSAGE, max_answer_length=15, top_n=100)

        assert (spans.end >= spans.start).all()
        assert pairs(spans.start[:2], spans.end[:2]) == [(5, 5), (8, 8)]
        np.testing.assert_allclose(spans.logit_sum[:2], [11.0, 11.0])

    def test_max_answer_length_is_respected(self):
        start = np.zeros(WINDOW_LENGTH)
        end = np.zeros(WINDOW_LENGTH)
        start[4], end[9] = 10.0, 10.0  # a 6-token span

        long_enough = best_spans(start, end, PASSAGE, max_answer_length=6, top_n=1)
        too_short = best_spans(start, end, PASSAGE, max_answer_length=5, top_n=100)

        assert (long_enough.start[0], long_enough.end[0]) == (4, 9)
        assert (too_short.end - too_short.start + 1 <= 5).all()
        assert (4, 9) not in set(pairs(too_short.start, too_short.end))

    def test_top_n_are_ordered_best_first(self):
        start = np.array([0, 0, 0, 0, 3.0, 1.0, 0.5, 0, 0, 0, 0, 0, 0])
        end = np.array([0, 0, 0, 0, 2.0, 4.0, 0.1, 0, 0, 0, 0, 0, 0])

        spans = best_spans(start, end, PASSAGE, max_answer_length=15, top_n=3)

        assert pairs(spans.start, spans.end) == [(4, 5), (4, 4), (5, 5)]
        np.testing.assert_allclose(spans.logit_sum, [7.0, 5.0, 5.0])
        np.testing.assert_allclose(spans.start_logit, [3.0, 3.0, 1.0])
        np.testing.assert_allclose(spans.end_logit, [4.0, 2.0, 4.0])

    def test_ties_break_by_start_then_end(self):
        start = np.zeros(WINDOW_LENGTH)
        end = np.zeros(WINDOW_LENGTH)

        spans = best_spans(start, end, PASSAGE, max_answer_length=2, top_n=4)

        assert pairs(spans.start, spans.end) == [(4, 4), (4, 5), (5, 5), (5, 6)]

    def test_a_window_without_passage_tokens_yields_nothing(self):
        spans = best_spans(np.ones(5), np.ones(5), np.zeros(5, dtype=bool), max_answer_length=3, top_n=5)

        assert len(spans) == 0

    def test_fewer_valid_spans_than_top_n_returns_all_of_them(self):
        allowed = np.array([False, True, True, False])

        spans = best_spans(np.zeros(4), np.zeros(4), allowed, max_answer_length=15, top_n=10)

        assert spans_as_tuples(spans) == [(0, 1, 1), (0, 1, 2), (0, 2, 2)]

    def test_a_batch_returns_each_windows_spans_in_window_order(self):
        start = np.zeros((2, WINDOW_LENGTH))
        end = np.zeros((2, WINDOW_LENGTH))
        start[0, 7], end[0, 8] = 5.0, 5.0
        start[1, 4], end[1, 4] = 9.0, 9.0
        allowed = np.stack([PASSAGE, PASSAGE])

        spans = best_spans(start, end, allowed, max_answer_length=15, top_n=1)

        assert spans_as_tuples(spans) == [(0, 7, 8), (1, 4, 4)]
        np.testing.assert_allclose(spans.logit_sum, [10.0, 18.0])

    @pytest.mark.parametrize("seed", range(20))
    def test_matches_brute_force_reference_on_random_logits(self, seed):
        rng = np.random.default_rng(seed)
        length = int(rng.integers(1, 60))
        max_answer_length = int(rng.integers(1, 20))
        top_n = int(rng.integers(1, 30))
        start = rng.normal(size=length) * 3
        end = rng.normal(size=length) * 3
        allowed = rng.random(length) < 0.7

        spans = best_spans(start, end, allowed, max_answer_length, top_n)
        expected, expected_sums = brute_force_spans(start, end, allowed, max_answer_length, top_n)

        assert pairs(spans.start, spans.end) == expected
        np.testing.assert_allclose(spans.logit_sum, expected_sums)

    @pytest.mark.parametrize("seed", range(5))
    def test_matches_brute_force_reference_with_ties(self, seed):
        rng = np.random.default_rng(100 + seed)
        length = 40
        start = rng.integers(0, 3, size=length).astype(float)
        end = rng.integers(0, 3, size=length).astype(float)
        allowed = rng.random(length) < 0.8

        spans = best_spans(start, end, allowed, max_answer_length=7, top_n=25)
        expected, _ = brute_force_spans(start, end, allowed, 7, 25)

        assert pairs(spans.start, spans.end) == expected

    def test_batch_equals_window_by_window(self):
        rng = np.random.default_rng(7)
        start = rng.normal(size=(4, 30))
        end = rng.normal(size=(4, 30))
        allowed = rng.random((4, 30)) < 0.6

        batched = best_spans(start, end, allowed, max_answer_length=5, top_n=6)

        for window in range(4):
            alone = best_spans(start[window], end[window], allowed[window], max_answer_length=5, top_n=6)
            mine = batched.window == window
            np.testing.assert_array_equal(batched.start[mine], alone.start)
            np.testing.assert_array_equal(batched.end[mine], alone.end)

    @pytest.mark.parametrize("bad", [{"max_answer_length": 0}, {"top_n": 0}])
    def test_rejects_meaningless_limits(self, bad):
        arguments = {"max_answer_length": 3, "top_n": 3} | bad
        with pytest.raises(ValueError):
            best_spans(np.zeros(4), np.zeros(4), np.ones(4, dtype=bool), **arguments)


def softmax(values):
    exponentials = np.exp(values - values.max())
    return exponentials / exponentials.sum()


class TestWindowProbability:
    def test_equals_pipeline_softmax_over_passage_tokens_and_cls(self):
        rng = np.random.default_rng(3)
        start = rng.normal(size=WINDOW_LENGTH)
        end = rng.normal(size=WINDOW_LENGTH)
        spans = best_spans(start, end, PASSAGE, max_answer_length=15, top_n=5)

        log_probabilities = span_log_probabilities(start, end, PASSAGE, spans)

        # The pipeline: p_mask hides question/special/padding tokens but not [CLS] (position 0).
        support = PASSAGE.copy()
        support[0] = True
        p_start = np.where(support, softmax(np.where(support, start, -np.inf)), 0.0)
        p_end = np.where(support, softmax(np.where(support, end, -np.inf)), 0.0)
        expected = np.log(p_start[spans.start] * p_end[spans.end])
        np.testing.assert_allclose(log_probabilities, expected)

    def test_ranks_a_window_like_its_logit_sums(self):
        rng = np.random.default_rng(4)
        start = rng.normal(size=WINDOW_LENGTH)
        end = rng.normal(size=WINDOW_LENGTH)
        spans = best_spans(start, end, PASSAGE, max_answer_length=15, top_n=21)

        log_probabilities = span_log_probabilities(start, end, PASSAGE, spans)

        assert np.all(np.diff(log_probabilities) <= 1e-12)

    def test_across_windows_the_window_probability_decides(self):
        # Window 0: its best span has the larger logit sum (10 + 10) but competes with tokens almost
        # as good. Window 1: a smaller sum (6 + 6) that stands alone, so its probability is higher.
        start = np.zeros((2, WINDOW_LENGTH))
        end = np.zeros((2, WINDOW_LENGTH))
        start[0, 4:10] = 9.5
        end[0, 4:10] = 9.5
        start[0, 5], end[0, 5] = 10.0, 10.0
        start[1, 7], end[1, 7] = 6.0, 6.0
        allowed = np.stack([PASSAGE, PASSAGE])
        spans = best_spans(start, end, allowed, max_answer_length=1, top_n=1)

        log_probabilities = span_log_probabilities(start, end, allowed, spans)

        assert spans_as_tuples(spans) == [(0, 5, 5), (1, 7, 7)]
        assert spans.logit_sum[0] > spans.logit_sum[1]
        assert log_probabilities[1] > log_probabilities[0]

    def test_cls_mass_lowers_every_span_of_a_no_answer_window(self):
        start = np.zeros(WINDOW_LENGTH)
        end = np.zeros(WINDOW_LENGTH)
        spans = best_spans(start, end, PASSAGE, max_answer_length=1, top_n=1)
        confident_cls = start.copy()
        confident_cls[0] = 20.0

        plain = span_log_probabilities(start, end, PASSAGE, spans)
        no_answer = span_log_probabilities(confident_cls, end, PASSAGE, spans)

        assert no_answer[0] < plain[0] - 10


class TestWordAlignment:
    # [CLS] How tall ? [SEP] un ##believ ##able tall towers [SEP] [PAD]
    # Passage text: "unbelievable tall towers"; question words reuse word ids 0..2 on purpose.
    WORD_IDS = np.array([NO_WORD, 0, 1, 2, NO_WORD, 0, 0, 0, 1, 2, NO_WORD, NO_WORD])
    OFFSETS = np.array(
        [[0, 0], [0, 3], [4, 8], [8, 9], [0, 0], [0, 2], [2, 8], [8, 12], [13, 17], [18, 24], [0, 0], [0, 0]]
    )
    PASSAGE_TOKENS = np.array([False, False, False, False, False, True, True, True, True, True, False, False])

    def align(self, starts, ends, word_ids=None, offsets=None, passage=None):
        candidates = SpanCandidates(
            window=np.zeros(len(starts), dtype=np.int64),
            start=np.array(starts),
            end=np.array(ends),
            start_logit=np.zeros(len(starts)),
            end_logit=np.zeros(len(starts)),
        )
        return word_aligned_char_spans(
            self.WORD_IDS if word_ids is None else word_ids,
            self.OFFSETS if offsets is None else offsets,
            self.PASSAGE_TOKENS if passage is None else passage,
            candidates,
        )

    def test_a_start_inside_a_word_expands_to_the_whole_word(self):
        char_start, char_end = self.align([6], [8])

        assert (char_start[0], char_end[0]) == (0, 17)  # "unbelievable tall", not "believable tall"

    def test_an_end_inside_a_word_expands_to_the_word_end(self):
        char_start, char_end = self.align([5, 6], [5, 6])

        assert pairs(char_start, char_end) == [(0, 12), (0, 12)]

    def test_whole_words_keep_their_offsets(self):
        char_start, char_end = self.align([8, 8], [8, 9])

        assert pairs(char_start, char_end) == [(13, 17), (13, 24)]

    def test_question_tokens_with_the_same_word_id_do_not_widen_the_span(self):
        # Question word 1 ("tall" at 4..8 of the question) must not pull the start to 4.
        char_start, char_end = self.align([8], [8])

        assert (char_start[0], char_end[0]) == (13, 17)

    def test_a_word_cut_by_the_window_edge_spans_only_its_tokens_in_the_window(self):
        # This window starts inside "unbelievable": its first passage token is "##believ".
        word_ids = np.array([NO_WORD, 0, NO_WORD, 0, 0, 1, NO_WORD])
        offsets = np.array([[0, 0], [0, 3], [0, 0], [2, 8], [8, 12], [13, 17], [0, 0]])
        passage = np.array([False, False, False, True, True, True, False])

        char_start, char_end = self.align([3], [4], word_ids, offsets, passage)

        assert (char_start[0], char_end[0]) == (2, 12)

    def test_without_word_ids_tokens_keep_their_own_offsets(self):
        no_words = np.full_like(self.WORD_IDS, NO_WORD)

        char_start, char_end = self.align([6], [6], word_ids=no_words)

        assert (char_start[0], char_end[0]) == (2, 8)

    def test_each_candidate_uses_its_own_window(self):
        word_ids = np.stack([self.WORD_IDS, np.full_like(self.WORD_IDS, NO_WORD)])
        offsets = np.stack([self.OFFSETS, self.OFFSETS])
        passage = np.stack([self.PASSAGE_TOKENS, self.PASSAGE_TOKENS])
        candidates = SpanCandidates(
            window=np.array([0, 1]),
            start=np.array([6, 6]),
            end=np.array([6, 6]),
            start_logit=np.zeros(2),
            end_logit=np.zeros(2),
        )

        char_start, char_end = word_aligned_char_spans(word_ids, offsets, passage, candidates)

        assert pairs(char_start, char_end) == [(0, 12), (2, 8)]


class TestComparableScore:
    def test_is_sigmoid_of_the_scaled_logit_sum(self):
        sums = np.array([-30.0, -1.0, 0.0, 2.5, 17.0])

        expected = 1.0 / (1.0 + np.exp(-SCORE_CALIBRATION * sums))

        np.testing.assert_allclose(comparable_score(sums), expected)
        assert comparable_score(0.0) == pytest.approx(0.5)

    def test_is_monotone_and_bounded_even_for_extreme_sums(self):
        sums = np.array([-1e6, -50.0, 0.0, 50.0, 1e6])

        with np.errstate(all="raise"):
            scores = comparable_score(sums)

        assert np.all(np.diff(scores) >= 0)
        assert np.all((scores >= 0) & (scores <= 1))


class TestPipelineMerging:
    """Within one passage, spans with the same text (up to case) are one answer, as in the 4.57 pipeline."""

    PASSAGE_TEXT = "Paris is big. paris is old. Lyon is far."

    def candidates(self, spans: list[tuple[int, int, int, float]]):
        from spanqa.reader.span_reader import _Candidates

        window, start, end, log_p = (np.array(column) for column in zip(*spans))
        count = len(spans)
        return _Candidates(
            passage=np.zeros(count, dtype=np.int64), window=window, rank_in_window=np.arange(count),
            log_probability=np.log(log_p), char_start=start, char_end=end,
            start_logit=np.arange(count, dtype=np.float64), end_logit=np.zeros(count),
        )

    def test_same_text_sums_probabilities_and_keeps_the_first_place(self):
        from spanqa.reader.span_reader import _merge_like_the_pipeline

        # window 0: "Paris" 0.30, "Lyon" 0.40; window 1: "paris" 0.25 -> Paris 0.55 beats Lyon 0.40.
        candidates = self.candidates([(0, 0, 5, 0.30), (0, 28, 32, 0.40), (1, 14, 19, 0.25)])
        probability = np.exp(candidates.log_probability)
        spans = _merge_like_the_pipeline(0, self.PASSAGE_TEXT, np.array([0, 1, 2]), candidates, probability, top_k=2)
        assert [(span.start, span.end) for span in spans] == [(0, 5), (28, 32)]
        assert spans[0].start_logit == 0.0  # the first occurrence's logits travel with its offsets

    def test_top_k_counts_merged_answers(self):
        from spanqa.reader.span_reader import _merge_like_the_pipeline

        candidates = self.candidates([(0, 0, 5, 0.30), (1, 14, 19, 0.25), (0, 28, 32, 0.10)])
        probability = np.exp(candidates.log_probability)
        spans = _merge_like_the_pipeline(0, self.PASSAGE_TEXT, np.array([0, 1, 2]), candidates, probability, top_k=1)
        assert [(span.start, span.end) for span in spans] == [(0, 5)]
