"""The reader without Haystack: questions and plain passages in, each passage's best spans out.

`read_passages` reads one question's passages; `read_passages_batch` reads many questions'
passages with one tokenizer call and one length-sorted batching over all their windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spanqa.errors import ConfigError, check_positive_int
from spanqa.reader.decoding import (
    best_spans,
    comparable_score,
    span_log_probabilities,
    word_aligned_char_spans,
)
from spanqa.reader.loading import LoadedQAModel
from spanqa.reader.windows import Window, WindowBatch, encode_pairs, length_sorted_batches, truncate_questions
from spanqa.settings import ReaderSettings


def pipeline_candidates_per_window(top_k: int) -> int:
    """Spans each window offers: the pipeline's 2 * top_k + 10, as word alignment and merging
    spans of the same text leave fewer distinct answers than candidates."""
    return 2 * top_k + 10


def check_windows_fit(settings: ReaderSettings, qa_model: LoadedQAModel) -> None:
    """The window settings' checks that need the tokenizer and model: windows must fit the model
    and always advance (the settings' own checks ran when `settings` was made)."""
    special_tokens = qa_model.tokenizer.num_special_tokens_to_add(pair=True)
    passage_budget = settings.max_seq_length - settings.max_question_length - special_tokens
    if passage_budget <= settings.doc_stride:
        raise ConfigError(
            f"with max_seq_length={settings.max_seq_length}, max_question_length={settings.max_question_length} "
            f"and {special_tokens} special tokens, a window holds {passage_budget} passage tokens, "
            f"not more than doc_stride={settings.doc_stride}: windows would not advance; lower doc_stride "
            "or max_question_length, or raise max_seq_length"
        )
    max_positions = getattr(qa_model.config, "max_position_embeddings", None)
    if isinstance(max_positions, int) and settings.max_seq_length > max_positions:
        raise ConfigError(
            f"max_seq_length={settings.max_seq_length} exceeds the model's {max_positions} positions: "
            f"use max_seq_length <= {max_positions}"
        )


@dataclass(frozen=True)
class PassageSpan:
    """One answer span of one passage: characters start:end of passages[passage_index]."""

    passage_index: int
    start: int
    end: int
    start_logit: float
    end_logit: float

    @property
    def score(self) -> float:
        """Comparable across passages; see `spanqa.reader.decoding.comparable_score`."""
        return float(comparable_score(self.start_logit + self.end_logit))


@dataclass(frozen=True)
class _Candidates:
    """Decoded candidates of all windows of a call, one entry per candidate."""

    passage: np.ndarray  # index of the (question, passage) pair; the passage's, for one question
    window: np.ndarray  # index into the call's window list
    rank_in_window: np.ndarray
    log_probability: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray
    start_logit: np.ndarray
    end_logit: np.ndarray


def _decode_batch(
    batch: WindowBatch,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    passage_of_window: np.ndarray,
    max_answer_length: int,
    candidates_per_window: int,
) -> _Candidates:
    spans = best_spans(start_logits, end_logits, batch.passage_tokens, max_answer_length, candidates_per_window)
    log_probability = span_log_probabilities(start_logits, end_logits, batch.passage_tokens, spans)
    char_start, char_end = word_aligned_char_spans(batch.word_ids, batch.offsets, batch.passage_tokens, spans)
    window = batch.window_indices[spans.window]
    # best_spans lists each window's spans together, best first.
    rank_in_window = np.arange(len(spans)) - np.searchsorted(spans.window, spans.window)
    return _Candidates(
        passage=passage_of_window[window],
        window=window,
        rank_in_window=rank_in_window,
        log_probability=log_probability,
        char_start=char_start,
        char_end=char_end,
        start_logit=spans.start_logit,
        end_logit=spans.end_logit,
    )


def _concatenate(parts: list[_Candidates]) -> _Candidates:
    return _Candidates(
        **{
            name: np.concatenate([getattr(part, name) for part in parts])
            for name in _Candidates.__dataclass_fields__
        }
    )


def _merge_like_the_pipeline(
    passage_index: int,
    passage: str,
    in_window_order: np.ndarray,
    candidates: _Candidates,
    probability: np.ndarray,
    top_k: int,
) -> list[PassageSpan]:
    """One passage's answers as the transformers 4.57 question-answering pipeline ranks them.

    Walking the candidates in window order (each window best first), word-aligned spans whose
    text is the same up to case are one answer: it stays where its first occurrence is, and its
    probability is the sum of theirs. Answers are then ranked by that sum (a stable sort, so
    ties keep first-seen order) and the best `top_k` kept.
    """
    merged: dict[str, list] = {}  # lower-cased text -> [probability sum, first candidate index]
    for index in in_window_order:
        start, end = int(candidates.char_start[index]), int(candidates.char_end[index])
        if end <= start:
            continue
        key = passage[start:end].lower()
        entry = merged.get(key)
        if entry is None:
            merged[key] = [float(probability[index]), int(index)]
        else:
            entry[0] += float(probability[index])
    ranked = sorted(merged.values(), key=lambda entry: entry[0], reverse=True)[:top_k]
    return [
        PassageSpan(
            passage_index=passage_index,
            start=int(candidates.char_start[index]),
            end=int(candidates.char_end[index]),
            start_logit=float(candidates.start_logit[index]),
            end_logit=float(candidates.end_logit[index]),
        )
        for _, index in ranked
    ]


def read_passages(
    qa_model: LoadedQAModel,
    question: str,
    passages: list[str],
    settings: ReaderSettings,
    top_k: int,
) -> list[list[PassageSpan]]:
    """The best `top_k` distinct spans of each passage, in the classic pipeline's order for that passage.

    All (question, passage) pairs are tokenised in one call, windows run through the model in
    length-sorted batches, and each passage's candidates from all its windows, widened to whole
    words, are merged and ranked as the pipeline does (`_merge_like_the_pipeline`). Result i
    belongs to passages[i]; compare spans across passages by `PassageSpan.score`, not by their
    position. `settings` gives the windows (`max_seq_length`, `doc_stride`, `max_question_length`),
    the batches (`reader_batch_size`, `reader_max_batch_tokens`) and `max_answer_length`.
    """
    return read_passages_batch(qa_model, [question], [passages], settings, top_k)[0]


def read_passages_batch(
    qa_model: LoadedQAModel,
    questions: list[str],
    passages_per_question: list[list[str]],
    settings: ReaderSettings,
    top_k: int | Sequence[int],
) -> list[list[list[PassageSpan]]]:
    """`read_passages` for many questions at once: `result[q][i]` are the spans of `passages_per_question[q][i]`.

    Every (question, passage) pair of every question is tokenised in one tokenizer call, and all
    their windows are sorted by length and cut into batches together (at most `reader_batch_size`
    windows and `reader_max_batch_tokens` tokens with padding each), so padding stays minimal and
    many questions share forward passes. Each pair's spans are what `read_passages` gives for that
    question alone (to float rounding between batch shapes). A blank question gets no spans.
    `top_k` is one number for every question or one per question (questions of different
    requests read together in a server).
    """
    if len(questions) != len(passages_per_question):
        raise ValueError(
            f"{len(questions)} questions but {len(passages_per_question)} passage lists: give one list per question"
        )
    top_ks = per_question_top_k(top_k, len(questions))
    results: list[list[list[PassageSpan]]] = [[[] for _ in passages] for passages in passages_per_question]
    asked = [index for index, question in enumerate(questions) if question.strip() and passages_per_question[index]]
    if not asked:
        return results
    pairs = _Pairs.of(qa_model.tokenizer, questions, passages_per_question, asked, settings.max_question_length)
    windows = encode_pairs(
        qa_model.tokenizer,
        pairs.questions,
        pairs.passages,
        max_seq_length=settings.max_seq_length,
        stride=settings.doc_stride,
        word_ids_available=qa_model.word_ids_available,
    )
    if not windows:
        return results
    candidates = _decode_windows(qa_model, windows, settings, pipeline_candidates_per_window(max(top_ks)))

    # Batches came in length order; put candidates back in window order: the pipeline walks a
    # passage's windows in order, and so must the merging below. Windows are numbered pair by
    # pair, so this order also groups each pair's candidates together.
    by_window = np.lexsort((candidates.rank_in_window, candidates.window))
    bounds = np.searchsorted(candidates.passage[by_window], np.arange(len(pairs.passages) + 1))
    probability = np.exp(candidates.log_probability)
    for pair_index, passage in enumerate(pairs.passages):
        in_pair = by_window[bounds[pair_index] : bounds[pair_index + 1]]
        question_top_k = top_ks[pairs.question_of_pair[pair_index]]
        # Windows were decoded for the largest top_k of the call; best_spans ranks each window's
        # spans stably, so its first 2*k+10 are exactly what a call with this question's k decodes.
        in_pair = in_pair[candidates.rank_in_window[in_pair] < pipeline_candidates_per_window(question_top_k)]
        passage_index = pairs.passage_of_pair[pair_index]
        results[pairs.question_of_pair[pair_index]][passage_index] = _merge_like_the_pipeline(
            passage_index, passage, in_pair, candidates, probability, question_top_k
        )
    return results


@dataclass(frozen=True)
class _Pairs:
    """The (question, passage) pairs of a call, in the order they are tokenised."""

    question_of_pair: list[int]  # per pair: the question's index in the call ...
    passage_of_pair: list[int]  # ... and the passage's index in that question's list
    questions: list[str]  # per pair: the question, cut to max_question_length tokens
    passages: list[str]

    @classmethod
    def of(
        cls, tokenizer, questions: list[str], passages_per_question: list[list[str]], asked: list[int],
        max_question_length: int,
    ) -> _Pairs:
        """Every passage of each asked question (by index) paired with that question, truncated."""
        truncated = truncate_questions(tokenizer, [questions[index] for index in asked], max_question_length)
        pairs = cls([], [], [], [])
        for question_index, question in zip(asked, truncated, strict=True):
            passages = passages_per_question[question_index]
            pairs.question_of_pair.extend([question_index] * len(passages))
            pairs.passage_of_pair.extend(range(len(passages)))
            pairs.questions.extend([question] * len(passages))
            pairs.passages.extend(passages)
        return pairs


def _decode_windows(
    qa_model: LoadedQAModel, windows: list[Window], settings: ReaderSettings, candidates_per_window: int
) -> _Candidates:
    """Every window through the model in length-sorted batches, each batch's spans decoded."""
    pair_of_window = np.array([window.passage_index for window in windows], dtype=np.int64)
    tokenizer = qa_model.tokenizer
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    max_batch_tokens = settings.reader_max_batch_tokens
    if max_batch_tokens is None:
        max_batch_tokens = qa_model.batch_tokens(settings.max_seq_length)
    batches = length_sorted_batches(
        windows, settings.reader_batch_size, pad_token_id, max_batch_tokens, qa_model.forward_cost_tokens
    )
    parts = []
    for batch in batches:
        start_logits, end_logits = qa_model.logits(batch)
        parts.append(
            _decode_batch(
                batch, start_logits, end_logits, pair_of_window, settings.max_answer_length, candidates_per_window
            )
        )
    return _concatenate(parts)


def per_question_top_k(top_k: int | Sequence[int], question_count: int) -> list[int]:
    """`top_k` as one checked number per question."""
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        return [check_positive_int("top_k", top_k)] * question_count
    top_ks = list(top_k)
    if len(top_ks) != question_count:
        raise ConfigError(f"{len(top_ks)} top_k values for {question_count} questions: give one per question")
    return [check_positive_int("top_k", value) for value in top_ks]
