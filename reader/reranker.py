"""The passage reranker: a cross-encoder scores each (question, retrieved passage) pair, and the
passages are handed to the reader best first (`spanqa.reader.reranking` says how the scores combine).

`PassageReranker` is a Haystack component. Pairs of all questions of a call are tokenised in one
call and scored in length-sorted batches. On the CPU it runs in float32 or, with precision 'int8',
in ONNX Runtime with int8 weights built with the reader's fast-mode machinery (input smoothing,
dynamic quantisation); on CUDA in fp16.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from haystack import Document, component, default_from_dict, default_to_dict
from spanqa.devices import check_device, resolve_device
from spanqa.errors import ConfigError, ModelLoadError
from spanqa.onnx_cache import Int8Build, load_or_build, model_source_directory
from spanqa.onnx_int8 import (
    cpu_session_opener,
    cpu_session_options,
    export_onnx,
    quantise_weights_int8,
    require_onnx_runtime,
    smooth_product_inputs,
    weight_products,
)
from spanqa.reader.fast_mode import FAST_SMOOTHING_ALPHA, calibration_digest, calibration_feeds
from spanqa.reader.reranking import passage_order, passage_scores
from spanqa.settings import RerankSettings

# Pairs per forward pass on the CPU: length-sorted, so padding stays small; more gains nothing there.
_TOKENS_PER_BATCH = 8192
# The build format of the int8 graph in the cache (spanqa.onnx_cache): bump it whenever the export,
# smoothing or quantisation of `_build_int8` changes.
_INT8_FORMAT = "spanqa-int8-reranker-1"


def rerank_precision(precision: str, device: str) -> str:
    """What 'auto' means on `device` (resolved: 'cpu', 'cuda', 'cuda:N'): int8 on the CPU, fp16 on CUDA."""
    if device.startswith("cuda"):
        if precision == "int8":
            raise ConfigError("rerank_precision='int8' runs on the CPU only: use 'auto' or 'float32' on CUDA")
        return "float16" if precision == "auto" else precision
    return "int8" if precision == "auto" else precision


@component
class PassageReranker:
    """Reorders a question's retrieved Documents by a cross-encoder's score of each (question, passage).

    The first `candidates` Documents are scored; each gets `meta["rerank_score"]` (the model's
    logit), `meta["retrieval_rank"]` and `meta["retrieval_score"]` (its place and score before),
    and its `score` and `meta["passage_score"]` become the passage score (the logit plus
    `retrieval_weight` times its retrieval score min-max scaled over the scored Documents,
    `spanqa.reader.reranking.passage_scores`). They come back best passage score first,
    followed by any later Documents in retrieval order; `top_k` cuts the result.
    """

    def __init__(
        self,
        model: str = RerankSettings.reranker,
        *,
        candidates: int = 20,
        retrieval_weight: float = RerankSettings.retrieval_weight,
        device: str = "auto",
        precision: str = RerankSettings.rerank_precision,
        max_tokens: int = RerankSettings.rerank_max_tokens,
    ):
        self.settings = RerankSettings(
            rerank=candidates, reranker=model, retrieval_weight=retrieval_weight, rerank_precision=precision,
            rerank_max_tokens=max_tokens,
        )
        self.device = check_device(device)
        if self.device.startswith("cuda"):
            rerank_precision(precision, self.device)  # int8 on CUDA fails here, not at the first question
        self._scorer: Any = None

    @classmethod
    def from_settings(cls, settings: RerankSettings, device: str = "auto") -> PassageReranker:
        """The reranker `settings` describe (not loaded: call `warm_up`), on `device`."""
        return cls(
            settings.reranker, candidates=settings.rerank, retrieval_weight=settings.retrieval_weight,
            device=device, precision=settings.rerank_precision, max_tokens=settings.rerank_max_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        """The reranker as a Haystack pipeline stores it: its model and settings."""
        s = self.settings
        return default_to_dict(
            self, model=s.reranker, candidates=s.rerank, retrieval_weight=s.retrieval_weight, device=self.device,
            precision=s.rerank_precision, max_tokens=s.rerank_max_tokens,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PassageReranker:
        """The reranker `to_dict` describes (not loaded: call `warm_up`)."""
        return default_from_dict(cls, data)

    def warm_up(self) -> None:
        """Loads the model (a ModelLoadError when it cannot load) and, for int8, builds its ONNX graph."""
        if self._scorer is None:
            self._scorer = _load_scorer(self.settings, self.device)

    def score_pairs(self, questions: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """The model's relevance logit of each (questions[i], passages[i]) pair."""
        self.warm_up()
        if len(questions) != len(passages):
            raise ValueError(f"{len(questions)} questions for {len(passages)} passages: give one of each per pair")
        if not questions:
            return np.zeros(0, dtype=np.float64)
        return self._scorer(list(questions), list(passages))

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: int | None = None) -> dict[str, list[Document]]:
        """`documents` (in retrieval order) reordered by passage score; at most `top_k` (None: all)."""
        return {"documents": self.run_batch([query], [documents], top_k)["documents"][0]}

    def run_batch(
        self, queries: list[str], documents: list[list[Document]], top_k: int | None = None
    ) -> dict[str, list[list[Document]]]:
        """`run` for many queries, all their pairs scored together."""
        if len(queries) != len(documents):
            raise ConfigError(f"{len(queries)} queries and {len(documents)} document lists: give one list per query")
        heads = [docs[: self.settings.rerank] for docs in documents]
        pairs = [(query, str(doc.content or "")) for query, head in zip(queries, heads, strict=True) for doc in head]
        logits = self.score_pairs([q for q, _ in pairs], [p for _, p in pairs]) if pairs else np.zeros(0)
        results = []
        offset = 0
        for head, docs in zip(heads, documents, strict=True):
            own = logits[offset : offset + len(head)]
            offset += len(head)
            results.append(rerank_documents(docs, own, self.settings.retrieval_weight)[:top_k])
        return {"documents": results}


def rerank_documents(documents: list[Document], logits: Sequence[float], retrieval_weight: float) -> list[Document]:
    """The first len(logits) `documents` ordered by passage score (copies, meta added), then the rest."""
    scores = passage_scores(logits, [document.score for document in documents[: len(logits)]], retrieval_weight)
    reranked = []
    for index in passage_order(scores):
        document = documents[index]
        meta = {
            **document.meta, "rerank_score": float(logits[index]), "retrieval_rank": index,
            "retrieval_score": document.score, "passage_score": scores[index],
        }
        reranked.append(replace(document, score=scores[index], meta=meta))
    return reranked + documents[len(logits) :]


# -- the model ------------------------------------------------------------------------------------------

def _load_scorer(settings: RerankSettings, device: str):
    import torch
    from transformers import AutoConfig, AutoTokenizer

    device = resolve_device(device)
    precision = rerank_precision(settings.rerank_precision, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(settings.reranker)
        config = AutoConfig.from_pretrained(settings.reranker)
    except Exception as error:  # transformers raises OSError, ValueError, KeyError... for a bad model
        raise ModelLoadError.from_cause("reranker model", settings.reranker, error) from error
    if int(getattr(config, "num_labels", 1)) != 1:
        raise ConfigError(
            f"the reranker '{settings.reranker}' has {config.num_labels} labels; a passage reranker "
            "gives one relevance logit per pair: use a cross-encoder such as cross-encoder/ms-marco-MiniLM-L6-v2"
        )
    if precision == "int8":  # the float model is loaded only when its int8 graph is not in the cache
        return _Int8Scorer(
            lambda: _load_model(settings.reranker), tokenizer, settings.rerank_max_tokens, torch.get_num_threads(),
            source_dir=model_source_directory(settings.reranker),
        )
    model = _load_model(settings.reranker)
    torch_device = torch.device(device)
    if precision == "float16":
        model.to(device=torch_device, dtype=torch.float16)
    else:
        model.to(device=torch_device)
    return _TorchScorer(model, tokenizer, settings.rerank_max_tokens, torch_device)


def _load_model(name: str) -> Any:
    """The cross-encoder `name` in eval mode (float32, CPU); a ModelLoadError when it cannot load."""
    from transformers import AutoModelForSequenceClassification

    try:
        model = AutoModelForSequenceClassification.from_pretrained(name)
    except Exception as error:  # as in _load_scorer
        raise ModelLoadError.from_cause("reranker model", name, error) from error
    return model.eval()


def _encode(tokenizer: Any, questions: list[str], passages: list[str], max_tokens: int) -> list[dict[str, list[int]]]:
    encoded = tokenizer(questions, passages, truncation="longest_first", max_length=max_tokens)
    names = [name for name in ("input_ids", "token_type_ids") if name in encoded]
    return [{name: encoded[name][row] for name in names} for row in range(len(questions))]


class _TorchScorer:
    """Float32 (CPU) or fp16 (CUDA) scoring in padded, length-sorted batches."""

    def __init__(self, model: Any, tokenizer: Any, max_tokens: int, device: Any):
        self.model, self.tokenizer, self.max_tokens, self.device = model, tokenizer, max_tokens, device

    def __call__(self, questions: list[str], passages: list[str]) -> np.ndarray:
        import torch

        rows = _encode(self.tokenizer, questions, passages, self.max_tokens)
        order = sorted(range(len(rows)), key=lambda row: len(rows[row]["input_ids"]))
        logits = np.zeros(len(rows), dtype=np.float64)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        start = 0
        while start < len(order):
            longest = len(rows[order[min(len(order) - 1, start)]]["input_ids"])
            size = max(1, _TOKENS_PER_BATCH // max(1, longest))
            batch = order[start : start + size]
            length = max(len(rows[row]["input_ids"]) for row in batch)
            inputs = {}
            for name in rows[batch[0]]:
                filled = np.full((len(batch), length), pad if name == "input_ids" else 0, dtype=np.int64)
                for position, row in enumerate(batch):
                    filled[position, : len(rows[row][name])] = rows[row][name]
                inputs[name] = torch.from_numpy(filled).to(self.device)
            lengths = torch.tensor([len(rows[row]["input_ids"]) for row in batch], device=self.device)
            inputs["attention_mask"] = (torch.arange(length, device=self.device)[None, :] < lengths[:, None]).long()
            with torch.inference_mode():
                output = self.model(**inputs).logits[:, 0].float().cpu().numpy()
            logits[batch] = output
            start += len(batch)
        return logits


class _Int8Scorer:
    """The model in ONNX Runtime with int8 weights, one pair per call (no padding); its graph is built
    once per model when `source_dir` names the folder the model was loaded from (spanqa.onnx_cache);
    `load_model` gives the float model, called only to build the graph (a cache miss)."""

    def __init__(
        self, load_model: Callable[[], Any], tokenizer: Any, max_tokens: int, threads: int,
        source_dir: Path | None = None,
    ):
        require_onnx_runtime("the reranker's int8 precision", "rerank_precision='float32'")
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        names = [name for name in ("input_ids", "token_type_ids") if name in tokenizer.model_input_names]
        options = cpu_session_options(threads)
        settings = {
            "max_tokens": max_tokens, "smoothing_alpha": FAST_SMOOTHING_ALPHA,
            "calibration_sha256": calibration_digest(), "input_names": names,
        }
        self.session = load_or_build(
            Int8Build("reranker", _INT8_FORMAT, source_dir, settings),
            lambda target: _build_int8(load_model(), tokenizer, names, max_tokens, target),
            cpu_session_opener(options),
        ).value
        self.names = names

    def __call__(self, questions: list[str], passages: list[str]) -> np.ndarray:
        rows = _encode(self.tokenizer, questions, passages, self.max_tokens)
        logits = np.zeros(len(rows), dtype=np.float64)
        for index, row in enumerate(rows):
            feed = {name: np.asarray([row[name]], dtype=np.int64) for name in self.names}
            value = float(self.session.run(None, feed)[0][0][0])
            logits[index] = value if math.isfinite(value) else -math.inf
        return logits


def _build_int8(model: Any, tokenizer: Any, names: list[str], max_tokens: int, target: Path) -> None:
    """The int8 graph of the cross-encoder at `target` (its folder holds the float graph on the way)."""
    # onnx comes with ONNX Runtime, an optional dependency of the int8 precision.
    import onnx

    exported = target.parent / "model.onnx"
    try:
        export_onnx(model, exported, names, ("logits",), lambda output: output.logits)
    except Exception as error:
        model.eval()
        raise ConfigError(
            f"rerank_precision='int8' could not export the reranker to ONNX ({type(error).__name__}: "
            f"{error}); use rerank_precision='float32'"
        ) from error
    graph = onnx.load(str(exported))
    feeds = [{k: v for k, v in feed.items() if k in names} for feed in calibration_feeds(tokenizer, max_tokens)]
    smooth_product_inputs(graph, weight_products(graph.graph), feeds, FAST_SMOOTHING_ALPHA)
    onnx.save(graph, str(exported))
    quantise_weights_int8(exported, target, weights_only=True, float_lookups=True)
