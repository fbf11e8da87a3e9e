"""The reader's CPU fast mode: the model in ONNX Runtime with int8 weights.

`OnnxInt8Runner` exports the model to ONNX, quantises the weights of its matrix products to int8
per output channel (dynamic quantisation: activations are quantised on the fly, their inputs
smoothed first) but for the first feed-forward output, and runs it one window at a time (no
padding). Faster than the exact runners of `spanqa.reader.forward`, and close to the exact model
but not equal. The int8 graph of a model loaded from files is built once and kept in the cache of
`spanqa.onnx_cache`. It has the runners' call signature: `runner(batch) -> (start_logits, end_logits)`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.errors import ConfigError
from spanqa.onnx_cache import Int8Build, load_cached, load_or_build
from spanqa.onnx_int8 import (
    cpu_session_opener,
    cpu_session_options,
    export_onnx,
    quantise_weights_int8,
    require_onnx_runtime,
    smooth_product_inputs,
    weight_products,
)
from spanqa.reader.forward import PaddedRunner, logits_agree, probe_batch
from spanqa.reader.windows import WindowBatch
from spanqa.settings import ReaderSettings

# Fast mode smooths the inputs of its int8 products (SmoothQuant's migration strength: 0.5 balances
# input and weight ranges, higher moves more of the input's range into the weights) and keeps the
# first layer's feed-forward output in float. Chosen with the trained MiniLM reader on SQuAD part-a
# (bench/README.md, "Reader") by how often fast mode's answer is exact mode's: 0.5 and 1.0 agreed
# least, 0.6-0.8 most; keeping that one product in float raised agreement from 90% to 93%.
FAST_SMOOTHING_ALPHA = 0.7
FAST_FLOAT_FEED_FORWARD_LAYERS = 1
# The smoothing scales come from the inputs' largest values on these (question, passage) pairs of
# everyday text, shipped with spanqa: measured on the same questions, windows of random tokens gave
# scales that moved EM by up to 2.5 points from one random draw to the next.
FAST_CALIBRATION_TEXT = Path(__file__).parent / "data" / "fast_calibration.txt"
# The calibration pairs are tokenised as a window of the default `max_seq_length` holds them. Each is
# shorter than that (under 200 tokens), so the cut never applies: the scales do not depend on the
# window a reader is set to, and a longer pair added to the file is cut as the default reader cuts it.
FAST_CALIBRATION_MAX_TOKENS = ReaderSettings.max_seq_length
# The build format of the reader's int8 graph in the cache (spanqa.onnx_cache): bump it whenever the
# export, the smoothing or the quantisation changes in a way fast_build_settings does not record.
FAST_FORMAT = "spanqa-int8-reader-1"


def calibration_digest() -> str:
    """The sha256 of FAST_CALIBRATION_TEXT: the smoothing scales depend on its every byte."""
    return hashlib.sha256(FAST_CALIBRATION_TEXT.read_bytes()).hexdigest()


def fast_build_settings(graph_inputs: tuple[str, ...]) -> dict[str, Any]:
    """Every setting of the reader's int8 build, besides the model's files and the package versions,
    that changes the graph: what its cache entry is keyed by."""
    return {
        "smoothing_alpha": FAST_SMOOTHING_ALPHA,
        "float_feed_forward_layers": FAST_FLOAT_FEED_FORWARD_LAYERS,
        "calibration_sha256": calibration_digest(),
        "calibration_max_tokens": FAST_CALIBRATION_MAX_TOKENS,
        "input_names": list(graph_inputs),
    }


def calibration_feeds(tokenizer: Any, max_tokens: int = FAST_CALIBRATION_MAX_TOKENS) -> list[dict[str, np.ndarray]]:
    """FAST_CALIBRATION_TEXT's (question, passage) pairs as model inputs, one window each (the
    reader's and the reranker's int8 smoothing scales are measured on them)."""
    blocks = FAST_CALIBRATION_TEXT.read_text(encoding="utf-8").strip().split("\n\n")
    pairs = [block.split("\n", 1) for block in blocks]
    feeds = []
    for question, passage in pairs:
        encoded = tokenizer(
            question, passage, truncation="only_second", max_length=max_tokens, return_tensors="np"
        )
        feeds.append({name: np.asarray(value, dtype=np.int64) for name, value in encoded.items()})
    return feeds


def check_fast_mode_available() -> None:
    """ConfigError unless ONNX Runtime and the onnx package are importable."""
    require_onnx_runtime("the reader's fast mode", "fast=False")


def feed_forward_outputs(graph: Any, config: Any) -> list[str]:
    """Names of an ONNX graph's feed-forward output products, first layer first: the products whose
    weight maps the intermediate size to the hidden size (DistilBERT's or BERT's config names)."""
    hidden = getattr(config, "dim", None) or getattr(config, "hidden_size", None)
    intermediate = getattr(config, "hidden_dim", None) or getattr(config, "intermediate_size", None)
    shapes = {weight.name: tuple(weight.dims) for weight in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and len(node.input) == 2 and shapes.get(node.input[1]) == (intermediate, hidden)
    ]


class OnnxInt8Runner:
    """The CPU fast mode: the model in ONNX Runtime with int8 weights, one window per call (no padding)."""

    kind = "onnx-int8"

    def __init__(
        self, model: Any, tokenizer: Any, input_names: tuple[str, ...], threads: int, source_dir: Path | None = None
    ):
        """`source_dir`: the folder `model` was loaded from, which keys its int8 graph in the cache of
        `spanqa.onnx_cache` (built once per model); None: built at every load."""
        check_fast_mode_available()
        self._name_inputs(input_names)
        options = cpu_session_options(threads)
        self.session = load_or_build(
            self._build_spec(source_dir),
            lambda target: self._build(model, tokenizer, target, options),
            cpu_session_opener(options),
        ).value

    @classmethod
    def from_cache(cls, input_names: tuple[str, ...], threads: int, source_dir: Path) -> OnnxInt8Runner | None:
        """The runner of the int8 graph cached for the model in `source_dir` with these inputs, built
        by an earlier load; None when there is none (then load the model and build it)."""
        check_fast_mode_available()
        runner = cls.__new__(cls)
        runner._name_inputs(input_names)
        session = load_cached(runner._build_spec(source_dir), cpu_session_opener(cpu_session_options(threads)))
        if session is None:
            return None
        runner.session = session
        return runner

    def _name_inputs(self, input_names: tuple[str, ...]) -> None:
        self.model_input_names = input_names
        # One window per call: no padding, so no attention mask (all ones) to feed.
        self.input_names = tuple(name for name in input_names if name != "attention_mask")

    def _build_spec(self, source_dir: Path | None) -> Int8Build:
        return Int8Build("reader", FAST_FORMAT, source_dir, fast_build_settings(self.input_names))

    def _build(self, model: Any, tokenizer: Any, target: Path, options: Any) -> None:
        """The int8 graph of `model` at `target` (its folder holds the float graph on the way)."""
        # onnx comes with ONNX Runtime, an optional dependency of the fast mode.
        import onnx

        exported = target.parent / "model.onnx"
        self._export(model, exported)
        self._check_export(model, exported, options)
        # Measured with a trained MiniLM-L6 reader on SQuAD (bench/README.md, "Reader"): what
        # moves answers is the embeddings' int8 table, attention's quantised probabilities (both
        # stay float) and, most, the feed-forward outputs: the GELU outputs they read have a few
        # large channels that coarsen one per-tensor activation scale. Every int8 product's
        # input is smoothed; the first of those outputs, the most sensitive, stays float.
        # One load and one save of the graph for naming, smoothing and handing to the quantiser.
        float_model = onnx.load(str(exported))
        kept_float = feed_forward_outputs(float_model.graph, model.config)[:FAST_FLOAT_FEED_FORWARD_LAYERS]
        smooth_product_inputs(
            float_model, [name for name in weight_products(float_model.graph) if name not in kept_float],
            calibration_feeds(tokenizer), FAST_SMOOTHING_ALPHA,
        )
        onnx.save(float_model, str(exported))
        quantise_weights_int8(exported, target, weights_only=True, float_lookups=True, float_nodes=kept_float)

    def _export(self, model: Any, path: Path) -> None:
        try:
            export_onnx(
                model, path, self.input_names, ("start_logits", "end_logits"),
                lambda output: (output.start_logits, output.end_logits),
            )
        except Exception as error:
            model.eval()
            raise ConfigError(
                f"fast=True could not export the model to ONNX ({type(error).__name__}: {error}); use fast=False"
            ) from error

    def _check_export(self, model: Any, path: Path, options: Any) -> None:
        """The float ONNX graph must give the model's own logits on windows of another length than traced."""
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        import torch

        probe = probe_batch(int(getattr(model.config, "vocab_size", 100)), 0)
        reference = PaddedRunner(model, torch.device("cpu"), self.model_input_names)(probe)
        if not logits_agree(reference, self._run(session, probe), probe, 1e-3):
            raise ConfigError(
                "fast=True: the model exported to ONNX does not reproduce its own logits on other window "
                "lengths (its forward has shape-dependent code the exporter froze); use fast=False"
            )

    def _run(self, session: Any, batch: WindowBatch) -> tuple[np.ndarray, np.ndarray]:
        arrays = {"input_ids": batch.input_ids, "token_type_ids": batch.token_type_ids}
        start = np.zeros(batch.input_ids.shape, dtype=np.float64)
        end = np.zeros(batch.input_ids.shape, dtype=np.float64)
        for row, length in enumerate(batch.lengths.tolist()):
            feed = {name: np.ascontiguousarray(arrays[name][row : row + 1, :length]) for name in self.input_names}
            window_start, window_end = session.run(None, feed)
            start[row, :length] = window_start[0]
            end[row, :length] = window_end[0]
        return start, end

    def __call__(self, batch: WindowBatch) -> tuple[np.ndarray, np.ndarray]:
        return self._run(self.session, batch)
