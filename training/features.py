"""Examples to model inputs: each question's passages (its own, then retrieved ones without the
answer) tokenised into the reader's windows, with the answer's token positions as targets; groups
padded into batches. Pure functions over a fast tokenizer and numpy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spanqa.reader.windows import encode_pairs, truncate_questions
from spanqa.training.data import Span, TrainExample


@dataclass(frozen=True)
class GroupWindow:
    """One (question, passage window) input and where its answer starts and ends, if it holds one."""

    input_ids: np.ndarray  # int64 (L,)
    token_type_ids: np.ndarray  # int64 (L,)
    candidates: np.ndarray  # bool (L,): positions a start or end may take: the passage's tokens and [CLS]
    starts: np.ndarray  # bool (L,): answer starts
    ends: np.ndarray  # bool (L,): answer ends


@dataclass(frozen=True)
class ReaderGroup:
    """All windows of one question's passages, read under one softmax; `wrong` holds (window, start,
    end) token spans marked wrong."""

    windows: tuple[GroupWindow, ...]
    wrong: tuple[tuple[int, int, int], ...] = ()

    @property
    def answerable(self) -> bool:
        return any(window.starts.any() for window in self.windows)


def token_span(offsets: np.ndarray, passage: np.ndarray, span: Span) -> tuple[int, int] | None:
    """First and last token of characters `span` in one window (`offsets` (L, 2) into the passage,
    `passage` the mask of its tokens); None when the window does not hold the whole span."""
    positions = np.flatnonzero(passage)
    if len(positions) == 0:
        return None
    if offsets[positions[0], 0] > span.start or offsets[positions[-1], 1] < span.end:
        return None
    starts = positions[offsets[positions, 1] > span.start]  # tokens ending after the span starts
    ends = positions[offsets[positions, 0] < span.end]  # tokens starting before it ends
    if len(starts) == 0 or len(ends) == 0 or starts[0] > ends[-1]:
        return None
    return int(starts[0]), int(ends[-1])


def reader_groups(
    tokenizer,
    examples: Sequence[TrainExample],
    negatives: Sequence[Sequence[str]],
    max_seq_length: int,
    stride: int,
    max_question_length: int,
) -> tuple[list[ReaderGroup | None], list[str]]:
    """Each example's group (its own passage first, then `negatives[i]`), and why examples got None
    (an answer no window holds whole: a span longer than a window)."""
    questions = truncate_questions(tokenizer, [e.question for e in examples], max_question_length)
    pair_questions, pair_passages, owners = [], [], []
    for index, (question, example) in enumerate(zip(questions, examples, strict=True)):
        for passage in (example.context, *negatives[index]):
            pair_questions.append(question)
            pair_passages.append(passage)
            owners.append(index)
    windows = encode_pairs(tokenizer, pair_questions, pair_passages, max_seq_length, stride, word_ids_available=False)
    first_pair = {}
    for pair, owner in enumerate(owners):
        first_pair.setdefault(owner, pair)
    by_example: list[list] = [[] for _ in examples]
    for window in windows:
        by_example[owners[window.passage_index]].append(window)
    groups: list[ReaderGroup | None] = []
    problems = []
    for index, example in enumerate(examples):
        group_windows, wrong = [], []
        for number, window in enumerate(by_example[index]):
            own = window.passage_index == first_pair[index]
            starts = np.zeros(len(window), dtype=bool)
            ends = np.zeros(len(window), dtype=bool)
            for span in example.answers if own else ():
                found = token_span(window.offsets, window.passage_tokens, span)
                if found is not None:
                    starts[found[0]] = ends[found[1]] = True
            for span in example.wrong if own else ():
                found = token_span(window.offsets, window.passage_tokens, span)
                if found is not None:
                    wrong.append((number, *found))
            candidates = window.passage_tokens.copy()
            candidates[0] = True  # [CLS]: the no-answer option
            group_windows.append(GroupWindow(window.input_ids, window.token_type_ids, candidates, starts, ends))
        group = ReaderGroup(tuple(group_windows), tuple(wrong))
        if example.answers and not group.answerable:
            groups.append(None)
            problems.append(f"{example.example_id}: its answer is longer than a window")
        elif not example.answers and not wrong:
            groups.append(None)
            problems.append(f"{example.example_id}: the span marked wrong is longer than a window")
        else:
            groups.append(group)
    return groups, problems


@dataclass(frozen=True)
class ReaderBatch:
    """Groups' windows padded to one length; `group_of[r]` is row r's group within the batch."""

    input_ids: np.ndarray  # int64 (B, L)
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    candidates: np.ndarray  # bool (B, L)
    starts: np.ndarray
    ends: np.ndarray
    group_of: np.ndarray  # int64 (B,)
    wrong: np.ndarray  # int64 (K, 3): row, start, end
    groups: int


def collate_reader(groups: Sequence[ReaderGroup], pad_token_id: int) -> ReaderBatch:
    rows = [window for group in groups for window in group.windows]
    length = max(len(window.input_ids) for window in rows)
    size = len(rows)
    input_ids = np.full((size, length), pad_token_id, dtype=np.int64)
    token_type_ids = np.zeros((size, length), dtype=np.int64)
    attention_mask = np.zeros((size, length), dtype=np.int64)
    masks = {name: np.zeros((size, length), dtype=bool) for name in ("candidates", "starts", "ends")}
    group_of, wrong = [], []
    row = 0
    for number, group in enumerate(groups):
        for window_number, window in enumerate(group.windows):
            filled = len(window.input_ids)
            input_ids[row + window_number, :filled] = window.input_ids
            token_type_ids[row + window_number, :filled] = window.token_type_ids
            attention_mask[row + window_number, :filled] = 1
            for name, mask in masks.items():
                mask[row + window_number, :filled] = getattr(window, name)
            group_of.append(number)
        wrong.extend((row + window, start, end) for window, start, end in group.wrong)
        row += len(group.windows)
    return ReaderBatch(
        input_ids, token_type_ids, attention_mask, masks["candidates"], masks["starts"], masks["ends"],
        np.asarray(group_of, dtype=np.int64), np.asarray(wrong, dtype=np.int64).reshape(-1, 3), len(groups),
    )


@dataclass(frozen=True)
class RerankBatch:
    """(question, passage) pairs of several groups, the first pair of each group the relevant one."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    group_sizes: tuple[int, ...]


def rerank_batch(tokenizer, questions: Sequence[str], groups: Sequence[Sequence[str]], max_tokens: int) -> RerankBatch:
    """Each question paired with each passage of its group (its own first), tokenised as the reranker
    reads them: the passage cut to `max_tokens` with the question."""
    pairs_q = [question for question, passages in zip(questions, groups, strict=True) for _ in passages]
    pairs_p = [passage for passages in groups for passage in passages]
    encoded = tokenizer(pairs_q, pairs_p, truncation="only_second", max_length=max_tokens, padding=True,
                        return_tensors="np")
    token_type_ids = encoded.get("token_type_ids")
    if token_type_ids is None:
        token_type_ids = np.zeros_like(encoded["input_ids"])
    return RerankBatch(encoded["input_ids"].astype(np.int64), token_type_ids.astype(np.int64),
                       encoded["attention_mask"].astype(np.int64), tuple(len(passages) for passages in groups))
