"""The reader without Haystack: a question and plain passages in, each passage's best spans out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spanqa import defaults
from spanqa.errors import ConfigError
from spanqa.reader.decoding import (
    best_spans,
    comparable_score,
    rank_passage_spans,
    span_log_probabilities,
    word_aligned_char_spans,
)
from spanqa.reader.loading import LoadedQAModel
from spanqa.reader.windows import WindowBatch, encode_windows, length_sorted_batches, truncate_question

# Each window yields this many times top_k candidates, so that after the same span found in
# overlapping windows (or two token spans widened to the same words) collapses into one answer,
# a passage still has top_k distinct answers to offer.
CANDIDATE_OVERSAMPLING = 4


@dataclass(frozen=True)
class ReadingSettings:
    """How passages are cut into windows and spans decoded; defaults are the classic pipeline's."""

    max_answer_length: int = defaults.MAX_ANSWER_LENGTH
    max_seq_length: int = defaults.MAX_SEQ_LENGTH
    doc_stride: int = defaults.DOC_STRIDE
    max_question_length: int = defaults.MAX_QUESTION_LENGTH
    batch_size: int = defaults.READER_BATCH_SIZE

    def __post_init__(self) -> None:
        for name in ("max_answer_length", "max_seq_length", "max_question_length", "batch_size"):
            _check_positive_int(name, getattr(self, name))
        if not _is_int(self.doc_stride) or self.doc_stride < 0:
            raise ConfigError(f"doc_stride={self.doc_stride!r} must be an integer >= 0 (default {defaults.DOC_STRIDE})")
        if self.doc_stride >= self.max_seq_length:
            raise ConfigError(
                f"doc_stride={self.doc_stride} must be smaller than max_seq_length={self.max_seq_length}: "
                "it is the overlap of consecutive windows; lower doc_stride or raise max_seq_length"
            )
        if self.max_question_length >= self.max_seq_length:
            raise ConfigError(
                f"max_question_length={self.max_question_length} leaves no room for the passage in "
                f"max_seq_length={self.max_seq_length} tokens: lower max_question_length"
            )

    def check_fits(self, qa_model: LoadedQAModel) -> None:
        """Settings that depend on the tokenizer and model: windows must fit and always advance."""
        special_tokens = qa_model.tokenizer.num_special_tokens_to_add(pair=True)
        passage_budget = self.max_seq_length - self.max_question_length - special_tokens
        if passage_budget <= self.doc_stride:
            raise ConfigError(
                f"with max_seq_length={self.max_seq_length}, max_question_length={self.max_question_length} "
                f"and {special_tokens} special tokens, a window holds {passage_budget} passage tokens, "
                f"not more than doc_stride={self.doc_stride}: windows would not advance; lower doc_stride "
                "or max_question_length, or raise max_seq_length"
            )
        max_positions = getattr(getattr(qa_model.model, "config", None), "max_position_embeddings", None)
        if isinstance(max_positions, int) and self.max_seq_length > max_positions:
            raise ConfigError(
                f"max_seq_length={self.max_seq_length} exceeds the model's {max_positions} positions: "
                f"use max_seq_length <= {max_positions}"
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive_int(name: str, value: object) -> None:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name}={value!r} must be an integer >= 1")


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

    passage: np.ndarray
    window: np.ndarray  # index into the call's window list
    rank_in_window: np.ndarray
    log_probability: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray
    start_logit: np.ndarray
    end_logit: np.ndarray


def _logits(qa_model: LoadedQAModel, batch: WindowBatch) -> tuple[np.ndarray, np.ndarray]:
    import torch

    arrays = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "token_type_ids": batch.token_type_ids,
    }
    inputs = {name: torch.from_numpy(arrays[name]).to(qa_model.device) for name in qa_model.input_names}
    with torch.inference_mode():
        output = qa_model.model(**inputs)
    # float64 on the host: fp16 logits from a GPU would lose ties and overflow the softmax.
    start = output.start_logits.float().cpu().numpy().astype(np.float64)
    end = output.end_logits.float().cpu().numpy().astype(np.float64)
    return start, end


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


def read_passages(
    qa_model: LoadedQAModel,
    question: str,
    passages: list[str],
    settings: ReadingSettings,
    top_k: int,
) -> list[list[PassageSpan]]:
    """The best `top_k` distinct spans of each passage, in the classic pipeline's order for that passage.

    All (question, passage) pairs are tokenised in one call, windows run through the model in
    length-sorted batches, and each passage's candidates from all its windows are ranked by their
    window probability (`span_log_probabilities`), then widened to whole words. Spans with the same
    character offsets collapse into the best-ranked one. Result i belongs to passages[i]; compare
    spans across passages by `PassageSpan.score`, not by their position.
    """
    _check_positive_int("top_k", top_k)
    spans_per_passage: list[list[PassageSpan]] = [[] for _ in passages]
    if not passages or not question.strip():
        return spans_per_passage

    tokenizer = qa_model.tokenizer
    question = truncate_question(tokenizer, question, settings.max_question_length)
    windows = encode_windows(
        tokenizer,
        question,
        passages,
        max_seq_length=settings.max_seq_length,
        stride=settings.doc_stride,
        word_ids_available=qa_model.word_ids_available,
    )
    if not windows:
        return spans_per_passage
    passage_of_window = np.array([window.passage_index for window in windows], dtype=np.int64)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    parts = []
    for batch in length_sorted_batches(windows, settings.batch_size, pad_token_id):
        start_logits, end_logits = _logits(qa_model, batch)
        parts.append(
            _decode_batch(
                batch,
                start_logits,
                end_logits,
                passage_of_window,
                settings.max_answer_length,
                candidates_per_window=top_k * CANDIDATE_OVERSAMPLING,
            )
        )
    candidates = _concatenate(parts)

    # Batches came in length order; put candidates back in window order so ties between equally
    # probable spans resolve the same way whatever the batching.
    by_window = np.lexsort((candidates.rank_in_window, candidates.window))
    for passage_index in range(len(passages)):
        in_passage = by_window[candidates.passage[by_window] == passage_index]
        ranked = in_passage[rank_passage_spans(candidates.log_probability[in_passage])]
        seen_offsets: set[tuple[int, int]] = set()
        for index in ranked:
            offsets = (int(candidates.char_start[index]), int(candidates.char_end[index]))
            if offsets[1] <= offsets[0] or offsets in seen_offsets:
                continue
            seen_offsets.add(offsets)
            spans_per_passage[passage_index].append(
                PassageSpan(
                    passage_index=passage_index,
                    start=offsets[0],
                    end=offsets[1],
                    start_logit=float(candidates.start_logit[index]),
                    end_logit=float(candidates.end_logit[index]),
                )
            )
            if len(spans_per_passage[passage_index]) == top_k:
                break
    return spans_per_passage
