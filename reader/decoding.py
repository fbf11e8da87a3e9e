"""Span decoding from start/end logits: small pure numpy functions, testable without a model.

The reader asks a question-answering model for one start logit and one end logit per token of
each (question, passage window) pair. Everything from there to character offsets lives here:

- `best_spans`: the top-n valid spans of each window, ranked by start_logit + end_logit.
- `span_log_probabilities`: the classic transformers question-answering pipeline's per-window
  probability p_start * p_end, used to choose among the windows of one long passage.
- `word_aligned_char_spans`: token spans -> character spans widened to whole words
  (the pipeline's `align_to_words=True`).
- `comparable_score`: the score that ranks answers across passages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Haystack's TransformersExtractiveReader default; see `comparable_score`.
SCORE_CALIBRATION = 0.1
"""The factor on a span's logit sum before the sigmoid that makes its score (Haystack's reader's own)."""

# The pipeline unmasks the [CLS] token so that the softmax of every window includes it; BERT-like
# tokenizers put it first. Its share of the probability mass lowers every span's probability in
# windows where the model "sees no answer", which is what makes windows of one passage comparable.
CLS_POSITION = 0

NO_WORD = -1  # word id of tokens outside any word (special tokens, padding) or of tokenizers without words


@dataclass(frozen=True)
class SpanCandidates:
    """Candidate spans, one entry per span, as parallel arrays.

    `window` is the row of the (B, L) logits the span was read from (0 for a single window),
    `start`/`end` are inclusive token indices in that window, `logit_sum` is
    start_logit[start] + end_logit[end].
    """

    window: np.ndarray  # int64 (K,)
    start: np.ndarray  # int64 (K,)
    end: np.ndarray  # int64 (K,)
    start_logit: np.ndarray  # float64 (K,)
    end_logit: np.ndarray  # float64 (K,)

    @property
    def logit_sum(self) -> np.ndarray:
        """Each candidate's start + end logit."""
        return self.start_logit + self.end_logit

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def take(self, index: np.ndarray) -> SpanCandidates:
        """The candidates at `index` (an integer array or boolean mask), in that order."""
        return SpanCandidates(
            window=self.window[index],
            start=self.start[index],
            end=self.end[index],
            start_logit=self.start_logit[index],
            end_logit=self.end_logit[index],
        )


def _as_batch(array: np.ndarray, dtype: type) -> np.ndarray:
    batch = np.asarray(array, dtype=dtype)
    if batch.ndim == 1:
        return batch[None, :]
    if batch.ndim != 2:
        raise ValueError(f"expected shape (L,) or (B, L), got {batch.shape}")
    return batch


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    allowed: np.ndarray,
    max_answer_length: int,
    top_n: int,
) -> SpanCandidates:
    """The `top_n` best valid spans of each window, best first within each window.

    Inputs have shape (L,) for one window or (B, L) for a batch. A span (i, j) is valid when
    allowed[i] and allowed[j], i <= j and j - i + 1 <= max_answer_length; `allowed` must be True
    only on passage tokens, so question, special and padding tokens are never part of an answer
    boundary whatever their logits. Spans are ranked by start_logits[i] + end_logits[j]; ties go
    to the smaller start, then the smaller end, so the result is deterministic. A window with fewer
    than `top_n` valid spans returns all of them. Windows follow each other in the output.
    """
    if max_answer_length < 1:
        raise ValueError(f"max_answer_length must be >= 1, got {max_answer_length}")
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    start = _as_batch(start_logits, np.float64)
    end = _as_batch(end_logits, np.float64)
    mask = _as_batch(allowed, bool)
    if not (start.shape == end.shape == mask.shape):
        raise ValueError(f"shapes differ: start {start.shape}, end {end.shape}, allowed {mask.shape}")
    batch_size, length = start.shape
    band_width = min(max_answer_length, length)

    # band[b, i, d] scores the span (i, i + d): a (B, L, max_answer_length) band of the
    # (L, L) start x end matrix holds every span short enough, and only those.
    band = np.full((batch_size, length, band_width), -np.inf)
    for offset in range(band_width):
        valid = mask[:, : length - offset] & mask[:, offset:]
        pair_sum = start[:, : length - offset] + end[:, offset:]
        band[:, : length - offset, offset] = np.where(valid, pair_sum, -np.inf)

    flat = band.reshape(batch_size, length * band_width)
    # Flat index i * band_width + d grows with start, then end: a stable sort of the negated
    # scores breaks ties by (start, end).
    order = np.argsort(-flat, axis=1, kind="stable")[:, :top_n]
    picked = np.take_along_axis(flat, order, axis=1)
    keep = np.isfinite(picked)

    window = np.broadcast_to(np.arange(batch_size)[:, None], order.shape)[keep]
    span_start = (order // band_width)[keep]
    span_end = span_start + (order % band_width)[keep]
    return SpanCandidates(
        window=window.astype(np.int64),
        start=span_start.astype(np.int64),
        end=span_end.astype(np.int64),
        start_logit=start[window, span_start],
        end_logit=end[window, span_end],
    )


def _log_softmax_over(logits: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax restricted to `support`; -inf elsewhere."""
    masked = np.where(support, logits, -np.inf)
    row_max = masked.max(axis=1, keepdims=True)
    shifted = masked - row_max
    log_normaliser = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted - log_normaliser


def span_log_probabilities(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    allowed: np.ndarray,
    candidates: SpanCandidates,
) -> np.ndarray:
    """log(p_start * p_end) of each candidate within its own window, as the classic pipeline computes it.

    log p = s_i - logsumexp(s over allowed ∪ {CLS}) + e_j - logsumexp(e over allowed ∪ {CLS}).
    The transformers 4.x question-answering pipeline masks question, special and padding tokens
    but unmasks [CLS] (position 0), takes the softmax of each window over what is left, and ranks a
    long passage's candidates from all its windows by p_start * p_end. Within one window this
    order is the order of the logit sums; across windows it differs, and using it makes the reader
    pick, per passage, what the pipeline picks.
    """
    start = _as_batch(start_logits, np.float64)
    end = _as_batch(end_logits, np.float64)
    support = _as_batch(allowed, bool).copy()
    support[:, CLS_POSITION] = True
    start_log_probs = _log_softmax_over(start, support)
    end_log_probs = _log_softmax_over(end, support)
    return (
        start_log_probs[candidates.window, candidates.start]
        + end_log_probs[candidates.window, candidates.end]
    )


def word_aligned_char_spans(
    word_ids: np.ndarray,
    offsets: np.ndarray,
    passage_tokens: np.ndarray,
    candidates: SpanCandidates,
) -> tuple[np.ndarray, np.ndarray]:
    """Character (start, end) of each candidate, widened to the whole words at its ends.

    Shapes: `word_ids` (B, L) int with NO_WORD where a token has no word, `offsets` (B, L, 2)
    character offsets into the passage, `passage_tokens` (B, L) bool. The start is the first
    character of the word holding the start token, the end the last character (exclusive) of the
    word holding the end token, both found among the passage tokens *of the candidate's window*
    (what `Encoding.word_to_chars` gives on an overflowing window: a word cut by the window edge is
    only as wide as its part inside the window). A token without a word id keeps its own offsets.
    """
    word_ids = _as_batch(word_ids, np.int64)
    passage = _as_batch(passage_tokens, bool)
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim == 2:
        offsets = offsets[None, :, :]

    window = candidates.window
    window_words = word_ids[window]  # (K, L)
    window_passage = passage[window]
    window_offsets = offsets[window]  # (K, L, 2)
    token_starts = window_offsets[:, :, 0]
    token_ends = window_offsets[:, :, 1]
    big = np.iinfo(np.int64).max

    start_word = window_words[np.arange(len(window)), candidates.start]
    same_start_word = window_passage & (window_words == start_word[:, None])
    word_start = np.where(same_start_word, token_starts, big).min(axis=1)
    own_start = token_starts[np.arange(len(window)), candidates.start]
    char_start = np.where(start_word == NO_WORD, own_start, word_start)

    end_word = window_words[np.arange(len(window)), candidates.end]
    same_end_word = window_passage & (window_words == end_word[:, None])
    word_end = np.where(same_end_word, token_ends, -1).max(axis=1)
    own_end = token_ends[np.arange(len(window)), candidates.end]
    char_end = np.where(end_word == NO_WORD, own_end, word_end)
    return char_start, char_end


def comparable_score(logit_sum: np.ndarray | float) -> np.ndarray:
    """sigmoid(SCORE_CALIBRATION * (start_logit + end_logit)): a score answers from any passages share.

    The pipeline's p_start * p_end is normalised per window, so a mediocre span in a passage where
    nothing else fits can outscore a strong span in a passage full of plausible ones. This score is
    a fixed monotone transform of the raw logit sum, identical for every passage and window, so
    sorting by it is sorting by the logit sum, and it lies in (0, 1). It is the calibration
    Haystack's TransformersExtractiveReader applies by default (factor 0.1); it is a ranking
    score, not a calibrated probability of being correct.
    """
    scaled = SCORE_CALIBRATION * np.asarray(logit_sum, dtype=np.float64)
    # tanh form of the logistic function: no overflow warning for large negative sums.
    return 0.5 * (1.0 + np.tanh(0.5 * scaled))
