"""Sentence embeddings with int8 weights on the CPU: the fast embedder.

A sentence-transformers model (a BERT-like transformer, mean or CLS pooling, optionally normalised)
is exported once to ONNX, its linear layers' weights quantised to int8 per output channel (dynamic
quantisation: activations are quantised on the fly), and run by ONNX Runtime. On the 2-core AVX2
machine of bench/README.md this embeds 1.8-2.1x the word pieces per second of the float32 torch
model, with vectors at cosine >= 0.967 (mean 0.991) of the float model's (`bench/indexing.py embedder`).

The quantised model is kept in the int8 cache of `spanqa.onnx_cache` (`SPANQA_CACHE_DIR`, else
~/.cache/spanqa), keyed by the model files' contents and the package versions, so only the first
load pays for the export.

Pure parts (`read_sentence_model_layout`, `pool`, `length_batches`) are tested without a model;
`Int8SentenceEncoder` is the model; `Int8DocumentEmbedder`/`Int8TextEmbedder` are the Haystack
components the index and query pipelines use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from haystack import Document, component, default_from_dict, default_to_dict

from spanqa import defaults
from spanqa.errors import ConfigError, check_positive_int
from spanqa.onnx_cache import (  # noqa: F401 - cache_directory: bench/indexing.py imports it from here
    Int8Build,
    cache_directory,
    load_or_build,
    resolve_model_directory,
)
from spanqa.onnx_int8 import cpu_session_opener, export_onnx, quantise_weights_int8, require_onnx_runtime
from spanqa.settings import EMBEDDER_MODEL, EmbedderSettings

POOLING_MODES = ("mean", "cls")
# "auto": int8 where it can run (CPU, ONNX Runtime installed, a model layout it supports), else float32.
PRECISIONS = ("auto", "float32", "int8")
# Bumped whenever the export or the quantisation changes, so cached models are rebuilt.
EXPORT_FORMAT = "spanqa-int8-embedder-4"


@dataclass(frozen=True)
class SentenceModelLayout:
    """What the fast embedder needs to know of a sentence-transformers model directory."""

    directory: Path
    pooling: str  # "mean" or "cls"
    normalize: bool
    max_seq_length: int


@dataclass(frozen=True)
class EmbeddingSettings:
    """How an index's vectors are made: recorded in its manifest, used again for every question."""

    precision: str  # "float32" (the model as it is, torch) or "int8" (Int8SentenceEncoder)
    max_tokens: int | None  # word pieces of a text the embedder reads; None: as many as the model takes

    def __post_init__(self):
        if self.precision not in ("float32", "int8"):
            raise ConfigError(f"embedding precision {self.precision!r} must be 'float32' or 'int8'")
        if self.max_tokens is not None:
            check_positive_int("embed_max_tokens", self.max_tokens)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "max_tokens": self.max_tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "EmbeddingSettings":
        """The recorded settings; an index from before they were recorded embedded in float32, uncut."""
        if data is None:
            return cls(precision="float32", max_tokens=None)
        return cls(precision=data.get("precision"), max_tokens=data.get("max_tokens"))


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"embedder_precision={precision!r} must be one of {', '.join(PRECISIONS)}")
    return precision


def choose_precision(precision: str, model: str, torch_device: str) -> str:
    """The precision a new index is embedded in: `precision` itself unless "auto", which means int8
    on the CPU when ONNX Runtime is installed and the model is one it can run, else float32."""
    if check_precision(precision) != "auto":
        return precision
    if torch_device != "cpu":
        return "float32"  # a GPU embeds in float32 faster than int8 on the CPU
    try:
        check_fast_embedder_available()
        read_sentence_model_layout(resolve_model_directory(model))
    except Exception:  # noqa: BLE001 - any reason int8 cannot run means float32; loading reports real errors
        return "float32"
    return "int8"


def _module_kind(entry: dict) -> str:
    return str(entry.get("type", "")).rsplit(".", 1)[-1]


def read_sentence_model_layout(directory: str | Path) -> SentenceModelLayout:
    """The layout of the sentence-transformers model in `directory`; a ConfigError when the fast
    embedder cannot reproduce it (another pooling, extra layers such as Dense)."""
    directory = Path(directory)
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        raise ConfigError(
            f"'{directory}' is not a sentence-transformers model (no modules.json): the fast embedder "
            "needs one; use embedder_precision='float32'"
        )
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    kinds = [_module_kind(entry) for entry in modules]
    if not kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
        raise ConfigError(
            f"the fast embedder supports Transformer + Pooling models, '{directory}' has {kinds}; "
            "use embedder_precision='float32'"
        )
    unsupported = [kind for kind in kinds if kind not in ("Transformer", "Pooling", "Normalize")]
    if unsupported or kinds.count("Pooling") != 1 or kinds.index("Pooling") != 1:
        raise ConfigError(
            f"the fast embedder cannot run the modules {kinds} of '{directory}' (it runs Transformer, "
            "Pooling and Normalize in that order); use embedder_precision='float32'"
        )
    pooling_entry = modules[kinds.index("Pooling")]
    pooling_file = directory / pooling_entry.get("path", "") / "config.json"
    pooling_config = json.loads(pooling_file.read_text(encoding="utf-8"))
    modes = [key for key, value in pooling_config.items() if key.startswith("pooling_mode_") and value is True]
    names = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
    if len(modes) != 1 or modes[0] not in names:
        raise ConfigError(
            f"the fast embedder supports mean or CLS pooling, '{directory}' pools with {modes}; "
            "use embedder_precision='float32'"
        )
    settings_file = directory / "sentence_bert_config.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8")) if settings_file.is_file() else {}
    max_seq_length = settings.get("max_seq_length")
    if max_seq_length is None:
        max_seq_length = defaults.EMBEDDER_MAX_SEQ_LENGTH
    return SentenceModelLayout(
        directory=directory,
        pooling=names[modes[0]],
        normalize="Normalize" in kinds,
        max_seq_length=int(max_seq_length),
    )


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """Sentence vectors (B, D) from token states (B, L, D): the mean over real tokens or the first token."""
    if pooling == "cls":
        vectors = hidden[:, 0, :].astype(np.float32)
    elif pooling == "mean":
        mask = attention_mask[..., None].astype(np.float32)
        vectors = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    else:
        raise ConfigError(f"pooling={pooling!r} must be one of {POOLING_MODES}")
    if normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.astype(np.float32)


def length_batches(lengths: list[int], batch_tokens: int, max_batch: int) -> list[list[int]]:
    """Indices of texts grouped for forward passes: sorted by length (little padding), each group
    padded to its longest member within `batch_tokens` tokens and `max_batch` texts."""
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = max(lengths[index], 1)  # sorted ascending: the newcomer is the group's longest
        if current and ((len(current) + 1) * longest > batch_tokens or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def check_fast_embedder_available() -> None:
    require_onnx_runtime("the int8 embedder", "embedder_precision='float32'")


def _export_transformer(directory: Path, target: Path) -> None:
    """The model's transformer to ONNX: token ids and attention mask in, token states out."""
    from transformers import AutoModel

    # Eager attention exports as a plain additive mask; the default (SDPA) exports NaN guards
    # (IsNaN/Where) that took 13% of the int8 model's time.
    model = AutoModel.from_pretrained(str(directory), attn_implementation="eager").eval()
    # One text per row: every token is of segment 0, the models' default, so no token types are fed.
    names = ["input_ids", "attention_mask"]
    export_onnx(model, target, names, ("token_states",), lambda output: output.last_hidden_state, example_rows=2)
    _check_export(model, names, target)


def _check_export(model: Any, names: list[str], path: Path) -> None:
    """The float ONNX graph must give the model's own token states on another batch shape than traced,
    padding included (an export can freeze shape-dependent code)."""
    import onnxruntime
    import torch

    vocab = int(getattr(model.config, "vocab_size", 100))
    rng = np.random.default_rng(0)
    lengths = [23, 5, 14]
    feed = {name: np.zeros((len(lengths), max(lengths)), dtype=np.int64) for name in names}
    for row, length in enumerate(lengths):
        feed["input_ids"][row, :length] = rng.integers(1, vocab, size=length)
        feed["attention_mask"][row, :length] = 1
    with torch.no_grad():
        expected = model(**{name: torch.from_numpy(array) for name, array in feed.items()}).last_hidden_state.numpy()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, feed)
    real = feed["attention_mask"].astype(bool)
    if got.shape != expected.shape or not np.allclose(got[real], expected[real], atol=1e-3):
        raise ConfigError(
            f"the int8 embedder could not export '{getattr(model, 'name_or_path', 'the model')}' faithfully to "
            "ONNX (its token states differ on other batch shapes); use embedder_precision='float32'"
        )


def embedder_build(layout: SentenceModelLayout) -> Int8Build:
    """What the model's int8 graph is built from: its cache entry's key (spanqa.onnx_cache)."""
    return Int8Build("embedder", EXPORT_FORMAT, layout.directory, {})


def build_int8_embedder(layout: SentenceModelLayout, target: Path) -> None:
    """The model's int8 graph at `target` (its folder holds the float graph on the way)."""
    exported = target.parent / "model.onnx"
    _export_transformer(layout.directory, exported)
    # Signed weights per output channel: the fastest setting measured on AVX2 (no VNNI) that
    # keeps vectors at cosine >= 0.97 (mean 0.993) of the float model's; unsigned weights or
    # reduced range were 8-18% slower for +0.0015 mean cosine. Attention's products stay float.
    quantise_weights_int8(exported, target, weights_only=True)


def quantised_model_path(layout: SentenceModelLayout, cache_dir: Path) -> Path:
    """The int8 ONNX file of the model in `cache_dir`, exported and quantised there on first use; a
    ConfigError when `cache_dir` cannot be written."""
    # ONNX Runtime is an optional dependency of the int8 embedder (check_fast_embedder_available).
    import onnxruntime

    check_fast_embedder_available()
    loaded = load_or_build(
        embedder_build(layout),
        lambda target: build_int8_embedder(layout, target),
        lambda data: onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]),
        cache_dir,
    )
    if loaded.path is None:
        raise ConfigError(
            f"cannot write the int8 embedder into the cache folder '{cache_dir}': set SPANQA_CACHE_DIR to a "
            "writable folder"
        )
    return loaded.path


class Int8SentenceEncoder:
    """Texts to sentence vectors with the int8 ONNX model (CPU)."""

    def __init__(
        self,
        model: str,
        threads: int | None = None,
        batch_tokens: int = defaults.EMBEDDER_BATCH_TOKENS,
        max_tokens: int | None = EmbedderSettings.embed_max_tokens,
    ):
        check_fast_embedder_available()
        import onnxruntime
        from transformers import AutoTokenizer

        self.batch_tokens = check_positive_int("batch_tokens", batch_tokens)
        self.layout = read_sentence_model_layout(resolve_model_directory(model))
        self.max_tokens = self.layout.max_seq_length
        if max_tokens is not None:
            self.max_tokens = min(check_positive_int("max_tokens", max_tokens), self.layout.max_seq_length)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.layout.directory))
        options = onnxruntime.SessionOptions()
        if threads is None:
            import torch

            threads = torch.get_num_threads()  # as many as the exact embedder would use
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        loaded = load_or_build(
            embedder_build(self.layout),
            lambda target: build_int8_embedder(self.layout, target),
            cpu_session_opener(options),
        )
        self.session = loaded.value
        # The cached file; None when the cache folder cannot be written (built at every load then).
        self.model_path = None if loaded.path is None else str(loaded.path)
        self.input_names = tuple(node.name for node in self.session.get_inputs())
        self.dimension = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dimension) float32 vectors, in the order of `texts`."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_tokens, return_token_type_ids=False
        )
        lengths = [len(ids) for ids in encoded["input_ids"]]
        for batch in length_batches(lengths, self.batch_tokens, defaults.EMBEDDER_MAX_BATCH):
            width = max(lengths[index] for index in batch)
            arrays = {name: np.zeros((len(batch), width), dtype=np.int64) for name in self.input_names}
            for row, index in enumerate(batch):
                length = lengths[index]
                arrays["input_ids"][row, :length] = encoded["input_ids"][index]
                arrays["attention_mask"][row, :length] = 1
            pad = self.tokenizer.pad_token_id
            if pad is not None and pad != 0:  # the arrays start as zeros
                arrays["input_ids"][arrays["attention_mask"] == 0] = pad
            (hidden,) = self.session.run(None, arrays)
            vectors[batch] = pool(hidden, arrays["attention_mask"], self.layout.pooling, self.layout.normalize)
        return vectors


@component
class Int8DocumentEmbedder:
    """Embeds documents' content with the int8 fast embedder (the index side)."""

    def __init__(
        self,
        model: str = EMBEDDER_MODEL,
        max_tokens: int | None = EmbedderSettings.embed_max_tokens,
        batch_tokens: int = defaults.EMBEDDER_BATCH_TOKENS,
    ):
        self.model = model
        self.max_tokens = None if max_tokens is None else check_positive_int("max_tokens", max_tokens)
        self.batch_tokens = check_positive_int("batch_tokens", batch_tokens)
        self.encoder: Int8SentenceEncoder | None = None

    def warm_up(self) -> None:
        """Loads the int8 model (exported and quantised on first use of a model, then cached)."""
        if self.encoder is None:
            self.encoder = Int8SentenceEncoder(self.model, batch_tokens=self.batch_tokens, max_tokens=self.max_tokens)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]):
        """`documents` with the vector of their content as `embedding` (after `warm_up`)."""
        if self.encoder is None:
            raise ConfigError("Int8DocumentEmbedder is not loaded: call warm_up() first")
        vectors = self.encoder.encode([document.content or "" for document in documents])
        embedded = [replace(document, embedding=vector.tolist()) for document, vector in zip(documents, vectors)]
        return {"documents": embedded}

    def to_dict(self) -> dict[str, Any]:
        """The embedder as a Haystack pipeline stores it: its model and settings."""
        return default_to_dict(self, model=self.model, max_tokens=self.max_tokens, batch_tokens=self.batch_tokens)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Int8DocumentEmbedder":
        """The embedder `to_dict` describes (not loaded: call `warm_up`)."""
        return default_from_dict(cls, data)


@component
class Int8TextEmbedder:
    """Embeds one text (a question) with the int8 fast embedder (the query side)."""

    def __init__(
        self,
        model: str = EMBEDDER_MODEL,
        max_tokens: int | None = EmbedderSettings.embed_max_tokens,
        threads: int | None = None,
    ):
        """
        :param threads: ONNX Runtime threads; None: as many as torch uses. A server reading on the same
            cores gives 1: one question is too small to share, and idle pool threads spin.
        """
        self.model = model
        self.max_tokens = None if max_tokens is None else check_positive_int("max_tokens", max_tokens)
        self.threads = None if threads is None else check_positive_int("threads", threads)
        self.encoder: Int8SentenceEncoder | None = None

    def warm_up(self) -> None:
        """Loads the int8 model (exported and quantised on first use of a model, then cached)."""
        if self.encoder is None:
            self.encoder = Int8SentenceEncoder(self.model, threads=self.threads, max_tokens=self.max_tokens)

    @component.output_types(embedding=list[float])
    def run(self, text: str):
        """The vector of `text` as `embedding` (after `warm_up`)."""
        if self.encoder is None:
            raise ConfigError("Int8TextEmbedder is not loaded: call warm_up() first")
        if not isinstance(text, str):
            raise ConfigError(f"Int8TextEmbedder takes one string, got {type(text).__name__}")
        return {"embedding": self.encoder.encode([text])[0].tolist()}

    def to_dict(self) -> dict[str, Any]:
        """The embedder as a Haystack pipeline stores it: its model and settings."""
        return default_to_dict(self, model=self.model, max_tokens=self.max_tokens, threads=self.threads)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Int8TextEmbedder":
        """The embedder `to_dict` describes (not loaded: call `warm_up`)."""
        return default_from_dict(cls, data)
