"""Tokenising (question, passage) pairs into model windows, and batching those windows.

Long passages are read the way the classic transformers question-answering pipeline reads them:
question first, passage truncated into overlapping windows (`stride` tokens shared by neighbours).
All pairs of a call (one question's passages, or many questions' passages) are tokenised in one
fast-tokenizer call, and their windows are batched together by length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from spanqa.reader.decoding import NO_WORD

PASSAGE_SEQUENCE = 1  # sequence id of the passage in a (question, passage) pair


@dataclass(frozen=True)
class Window:
    """One (question, passage window) input of the model, with what decoding needs to map tokens back."""

    passage_index: int  # which (question, passage) pair of the encoding call this window reads
    input_ids: np.ndarray  # int64 (L,)
    token_type_ids: np.ndarray  # int64 (L,)
    passage_tokens: np.ndarray  # bool (L,): tokens of the passage; never question, special or padding
    word_ids: np.ndarray  # int64 (L,): word id of each passage token, NO_WORD elsewhere
    offsets: np.ndarray  # int64 (L, 2): character offsets into the passage

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class WindowBatch:
    """Windows padded to a common length: model inputs and decoding inputs side by side.

    Row r holds window `window_indices[r]` in its first `lengths[r]` positions; the rest is padding.
    """

    window_indices: np.ndarray  # int64 (B,): positions of these windows in the call's window list
    lengths: np.ndarray  # int64 (B,): real tokens of each row
    input_ids: np.ndarray  # int64 (B, L)
    token_type_ids: np.ndarray  # int64 (B, L)
    attention_mask: np.ndarray  # int64 (B, L)
    passage_tokens: np.ndarray  # bool (B, L); False on padding
    word_ids: np.ndarray  # int64 (B, L); NO_WORD on padding
    offsets: np.ndarray  # int64 (B, L, 2)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def padded(self) -> bool:
        """Whether any row is shorter than the batch."""
        return bool((self.lengths != self.input_ids.shape[1]).any())


def truncate_questions(tokenizer, questions: list[str], max_question_length: int) -> list[str]:
    """Each question cut after its first `max_question_length` tokens, so a passage always fits beside it.

    The cut is made on characters (at the end of the last kept token) rather than on ids, so the
    question is tokenised once more with its passages in a single call, like every other pair.
    One tokenizer call for all questions.
    """
    if not questions:
        return []
    encoded = tokenizer(list(questions), add_special_tokens=False, return_offsets_mapping=True)
    truncated = []
    for question, offsets in zip(questions, encoded["offset_mapping"], strict=True):
        if len(offsets) <= max_question_length:
            truncated.append(question)
        else:
            truncated.append(question[: offsets[max_question_length - 1][1]])
    return truncated


def truncate_question(tokenizer, question: str, max_question_length: int) -> str:
    """`question` cut after its first `max_question_length` tokens (see `truncate_questions`)."""
    return truncate_questions(tokenizer, [question], max_question_length)[0]


def _as_int_array(values: list[int | None], missing: int) -> np.ndarray:
    """A token-aligned list with None entries (sequence ids, word ids) as int64, None -> `missing`.

    numpy converts the list in C (None becomes NaN in a float array); no Python loop over tokens.
    """
    as_float = np.array(values, dtype=np.float64)
    return np.nan_to_num(as_float, nan=float(missing)).astype(np.int64)


def encode_pairs(
    tokenizer,
    questions: list[str],
    passages: list[str],
    max_seq_length: int,
    stride: int,
    word_ids_available: bool,
) -> list[Window]:
    """All windows of all (questions[i], passages[i]) pairs, from one fast-tokenizer call.

    Each window's `passage_index` is its pair's index i. `word_ids_available` is False for
    tokenizers without a pre-tokenizer: their "word" is the whole text, so word alignment would
    stretch an answer over the window; tokens then keep their own offsets.
    """
    if len(questions) != len(passages):
        raise ValueError(f"{len(questions)} questions for {len(passages)} passages: pairs need one of each")
    if not passages:
        return []
    encoded = tokenizer(
        list(questions),
        list(passages),
        truncation="only_second",
        max_length=max_seq_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    windows = []
    for pair_index, encoding in zip(encoded["overflow_to_sample_mapping"], encoded.encodings, strict=True):
        passage_tokens = _as_int_array(encoding.sequence_ids, missing=-1) == PASSAGE_SEQUENCE
        if word_ids_available:
            word_ids = np.where(passage_tokens, _as_int_array(encoding.word_ids, missing=NO_WORD), NO_WORD)
        else:
            word_ids = np.full(len(passage_tokens), NO_WORD, dtype=np.int64)
        windows.append(
            Window(
                passage_index=int(pair_index),
                input_ids=np.array(encoding.ids, dtype=np.int64),
                token_type_ids=np.array(encoding.type_ids, dtype=np.int64),
                passage_tokens=passage_tokens,
                word_ids=word_ids,
                offsets=np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2),
            )
        )
    return windows


def encode_windows(
    tokenizer,
    question: str,
    passages: list[str],
    max_seq_length: int,
    stride: int,
    word_ids_available: bool,
) -> list[Window]:
    """All windows of all passages of one question (question first, passage truncated); see `encode_pairs`."""
    return encode_pairs(
        tokenizer, [question] * len(passages), passages, max_seq_length, stride, word_ids_available
    )


def plan_batches(
    lengths: np.ndarray, batch_size: int | None, max_batch_tokens: int, forward_cost_tokens: int | None = None
) -> list[np.ndarray]:
    """Window indices of each batch: windows sorted by length, cut into runs of similar length.

    A batch holds at most `batch_size` windows (None: no limit) and at most `max_batch_tokens`
    tokens counted with padding (windows x its longest window), but always at least one window.
    Sorting first means each batch pads only to its own longest window.

    With `forward_cost_tokens` None the sorted windows are cut greedily (as few, full batches as
    the limits allow). With a number, the cuts minimise the work of padded forward passes: each
    batch costs its padded tokens plus `forward_cost_tokens` (what one more forward pass costs, in
    tokens' worth of compute), so a run of short windows is not padded to a long one when another
    pass is cheaper than the padding (on a CPU, where compute grows with every padded token).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    if forward_cost_tokens is not None and len(order) > 1:
        return _cheapest_cuts(lengths[order], order, batch_size, max_batch_tokens, forward_cost_tokens)
    batches: list[np.ndarray] = []
    first = 0
    for position in range(1, len(order) + 1):
        if position == len(order):
            batches.append(order[first:position])
            break
        count = position - first + 1  # windows if order[position] joins the batch
        too_many = batch_size is not None and count > batch_size
        if too_many or count * int(lengths[order[position]]) > max_batch_tokens:
            batches.append(order[first:position])
            first = position
    return batches


def _cheapest_cuts(
    sorted_lengths: np.ndarray, order: np.ndarray, batch_size: int | None, max_batch_tokens: int, forward_cost: int
) -> list[np.ndarray]:
    """Contiguous runs of the sorted windows with the least total cost (dynamic programming over
    where the last batch starts); batch [i..j] costs (j - i + 1) * length[j] + forward_cost."""
    count = len(sorted_lengths)
    best = np.zeros(count + 1, dtype=np.float64)  # best[j]: cheapest cost of the first j windows
    start_of_last = np.zeros(count + 1, dtype=np.int64)
    for last in range(count):
        length = int(sorted_lengths[last])
        # Windows one batch may hold ending here: the size and token limits (at least one window).
        most = max(1, max_batch_tokens // max(1, length))
        if batch_size is not None:
            most = min(most, batch_size)
        starts = np.arange(max(0, last - most + 1), last + 1)
        costs = best[starts] + (last - starts + 1) * length + forward_cost
        pick = int(np.argmin(costs))
        best[last + 1] = costs[pick]
        start_of_last[last + 1] = starts[pick]
    batches = []
    end = count
    while end > 0:
        start = int(start_of_last[end])
        batches.append(order[start:end])
        end = start
    return batches[::-1]


def length_sorted_batches(
    windows: list[Window],
    batch_size: int | None,
    pad_token_id: int,
    max_batch_tokens: int | None = None,
    forward_cost_tokens: int | None = None,
) -> Iterator[WindowBatch]:
    """Batches of windows of similar length (see `plan_batches`), each padded only to its own longest."""
    if not windows:
        return
    lengths = np.array([len(window) for window in windows], dtype=np.int64)
    budget = max_batch_tokens if max_batch_tokens is not None else int(lengths.sum())
    for indices in plan_batches(lengths, batch_size, budget, forward_cost_tokens):
        batch_lengths = lengths[indices]
        length = int(batch_lengths.max())
        size = len(indices)
        input_ids = np.full((size, length), pad_token_id, dtype=np.int64)
        token_type_ids = np.zeros((size, length), dtype=np.int64)
        passage_tokens = np.zeros((size, length), dtype=bool)
        word_ids = np.full((size, length), NO_WORD, dtype=np.int64)
        offsets = np.zeros((size, length, 2), dtype=np.int64)
        for row, index in enumerate(indices):
            window = windows[index]
            filled = len(window)
            input_ids[row, :filled] = window.input_ids
            token_type_ids[row, :filled] = window.token_type_ids
            passage_tokens[row, :filled] = window.passage_tokens
            word_ids[row, :filled] = window.word_ids
            offsets[row, :filled] = window.offsets
        attention_mask = (np.arange(length)[None, :] < batch_lengths[:, None]).astype(np.int64)
        yield WindowBatch(
            window_indices=np.asarray(indices, dtype=np.int64),
            lengths=batch_lengths,
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            attention_mask=attention_mask,
            passage_tokens=passage_tokens,
            word_ids=word_ids,
            offsets=offsets,
        )
