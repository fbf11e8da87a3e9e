"""What each model learns, as the loop's tasks: the reader reads a batch of question groups (shared
normalisation, spanqa.training.losses), the reranker scores each question's own passage against the
retrieved ones (listwise)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from spanqa.training.features import ReaderGroup, collate_reader, rerank_batch
from spanqa.training.losses import listwise_loss, shared_norm_loss

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def accepted_inputs(model: Any, tokenizer: Any) -> tuple[str, ...]:
    """The inputs both the tokenizer names and the model's forward() takes (DistilBERT: no token types)."""
    accepted = inspect.signature(model.forward).parameters
    return tuple(name for name in MODEL_INPUTS if name in accepted and name in tokenizer.model_input_names)


class ReaderTask:
    name = "reader"

    def __init__(self, groups: Sequence[ReaderGroup], tokenizer: Any, model: Any, device: torch.device):
        self.groups = list(groups)
        self.items = len(self.groups)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.inputs = accepted_inputs(model, tokenizer)
        self.device = device

    def loss(self, model: Any, indices: list[int]) -> torch.Tensor:
        batch = collate_reader([self.groups[i] for i in indices], self.pad)
        arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                  "token_type_ids": batch.token_type_ids}
        output = model(**{name: torch.from_numpy(arrays[name]).to(self.device) for name in self.inputs})
        tensors = {name: torch.from_numpy(getattr(batch, name)).to(self.device)
                   for name in ("candidates", "starts", "ends", "group_of", "wrong")}
        return shared_norm_loss(output.start_logits, output.end_logits, tensors["candidates"], tensors["starts"],
                                tensors["ends"], tensors["group_of"], batch.groups, tensors["wrong"])


class RerankTask:
    name = "reranker"

    def __init__(self, questions: Sequence[str], groups: Sequence[Sequence[str]], tokenizer: Any, model: Any,
                 max_tokens: int, device: torch.device):
        self.questions, self.groups = list(questions), [list(group) for group in groups]
        self.items = len(self.groups)
        self.tokenizer, self.max_tokens, self.device = tokenizer, max_tokens, device
        self.inputs = accepted_inputs(model, tokenizer)

    def loss(self, model: Any, indices: list[int]) -> torch.Tensor:
        batch = rerank_batch(self.tokenizer, [self.questions[i] for i in indices], [self.groups[i] for i in indices],
                             self.max_tokens)
        arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                  "token_type_ids": batch.token_type_ids}
        output = model(**{name: torch.from_numpy(arrays[name]).to(self.device) for name in self.inputs})
        return listwise_loss(output.logits[:, 0], batch.group_sizes)
