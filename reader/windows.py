"""Tokenising (question, passage) pairs into model windows, and batching those windows.

Long passages are read the way the classic transformers question-answering pipeline reads them:
question first, passage truncated into overlapping windows (`stride` tokens shared by neighbours).
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

    passage_index: int  # which passage of the call this window reads
    input_ids: np.ndarray  # int64 (L,)
    token_type_ids: np.ndarray  # int64 (L,)
    passage_tokens: np.ndarray  # bool (L,): tokens of the passage; never question, special or padding
    word_ids: np.ndarray  # int64 (L,): word id of each passage token, NO_WORD elsewhere
    offsets: np.ndarray  # int64 (L, 2): character offsets into the passage

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class WindowBatch:
    """Windows padded to a common length: model inputs and decoding inputs side by side."""

    window_indices: np.ndarray  # int64 (B,): positions of these windows in the call's window list
    input_ids: np.ndarray  # int64 (B, L)
    token_type_ids: np.ndarray  # int64 (B, L)
    attention_mask: np.ndarray  # int64 (B, L)
    passage_tokens: np.ndarray  # bool (B, L); False on padding
    word_ids: np.ndarray  # int64 (B, L); NO_WORD on padding
    offsets: np.ndarray  # int64 (B, L, 2)


def truncate_question(tokenizer, question: str, max_question_length: int) -> str:
    """`question` cut after its first `max_question_length` tokens, so a passage always fits beside it.

    The cut is made on characters (at the end of the last kept token) rather than on ids, so the
    question is tokenised once more with the passage in a single call, like every other pair.
    """
    encoding = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    if len(offsets) <= max_question_length:
        return question
    return question[: offsets[max_question_length - 1][1]]


def encode_windows(
    tokenizer,
    question: str,
    passages: list[str],
    max_seq_length: int,
    stride: int,
    word_ids_available: bool,
) -> list[Window]:
    """All windows of all passages, from one fast-tokenizer call (question first, passage truncated).

    `word_ids_available` is False for tokenizers without a pre-tokenizer: their "word" is the
    whole text, so word alignment would stretch an answer over the window; tokens then keep their
    own offsets.
    """
    encoded = tokenizer(
        [question] * len(passages),
        passages,
        truncation="only_second",
        max_length=max_seq_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    windows = []
    for passage_index, encoding in zip(encoded["overflow_to_sample_mapping"], encoded.encodings, strict=True):
        sequence_ids = np.array(
            [-1 if sequence is None else sequence for sequence in encoding.sequence_ids], dtype=np.int64
        )
        passage_tokens = sequence_ids == PASSAGE_SEQUENCE
        if word_ids_available:
            word_ids = np.array([NO_WORD if word is None else word for word in encoding.word_ids], dtype=np.int64)
            word_ids = np.where(passage_tokens, word_ids, NO_WORD)
        else:
            word_ids = np.full(len(sequence_ids), NO_WORD, dtype=np.int64)
        windows.append(
            Window(
                passage_index=int(passage_index),
                input_ids=np.array(encoding.ids, dtype=np.int64),
                token_type_ids=np.array(encoding.type_ids, dtype=np.int64),
                passage_tokens=passage_tokens,
                word_ids=word_ids,
                offsets=np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2),
            )
        )
    return windows


def length_sorted_batches(windows: list[Window], batch_size: int, pad_token_id: int) -> Iterator[WindowBatch]:
    """Batches of at most `batch_size` windows of similar length, each padded only to its own longest.

    Sorting by length first keeps padding (wasted model compute) small when short passages and
    long ones are read together.
    """
    order = sorted(range(len(windows)), key=lambda index: len(windows[index]))
    for first in range(0, len(order), batch_size):
        indices = order[first : first + batch_size]
        length = max(len(windows[index]) for index in indices)
        size = len(indices)
        input_ids = np.full((size, length), pad_token_id, dtype=np.int64)
        token_type_ids = np.zeros((size, length), dtype=np.int64)
        attention_mask = np.zeros((size, length), dtype=np.int64)
        passage_tokens = np.zeros((size, length), dtype=bool)
        word_ids = np.full((size, length), NO_WORD, dtype=np.int64)
        offsets = np.zeros((size, length, 2), dtype=np.int64)
        for row, index in enumerate(indices):
            window = windows[index]
            filled = len(window)
            input_ids[row, :filled] = window.input_ids
            token_type_ids[row, :filled] = window.token_type_ids
            attention_mask[row, :filled] = 1
            passage_tokens[row, :filled] = window.passage_tokens
            word_ids[row, :filled] = window.word_ids
            offsets[row, :filled] = window.offsets
        yield WindowBatch(
            window_indices=np.array(indices, dtype=np.int64),
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            attention_mask=attention_mask,
            passage_tokens=passage_tokens,
            word_ids=word_ids,
            offsets=offsets,
        )
