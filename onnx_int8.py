"""What the int8 paths (the reader's fast mode, the int8 embedder) share: ONNX Runtime present, a
transformers model exported to ONNX, and a float ONNX model's weights quantised to int8."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.errors import ConfigError


def require_onnx_runtime(feature: str, instead: str) -> None:
    """ConfigError unless ONNX Runtime and onnx are importable: `feature` needs them, `instead` says
    which setting does without."""
    import importlib.util

    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"{feature} runs in ONNX Runtime, but {', '.join(missing)} is not installed: pip install "
            f"onnxruntime onnx (both are dependencies of spanqa), or use {instead}"
        )


def cpu_session_options(threads: int) -> Any:
    """ONNX Runtime session options for an int8 model on the CPU, quiet, on `threads` threads (as many
    as torch uses: a fair comparison)."""
    import onnxruntime  # optional: only the int8 paths need it (require_onnx_runtime says so)

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    # Workers spin briefly between operators, as torch's OpenMP threads do: with spinning off, each
    # of the graph's hundreds of small operators waits for sleeping threads to wake (measured:
    # 0.85 s vs 0.72 s per question of 10 SQuAD passages on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.log_severity_level = 3
    return options


def cpu_session_opener(options: Any) -> Callable[[bytes], Any]:
    """Opens an int8 graph's bytes as an ONNX Runtime session on the CPU with `options` (what
    `spanqa.onnx_cache.load_or_build` and `load_cached` call to open a cache entry)."""
    import onnxruntime  # optional: only the int8 paths need it (require_onnx_runtime says so)

    return lambda data: onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def export_onnx(
    model: Any,
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    outputs_of: Callable[[Any], Any],
    example_rows: int = 1,
) -> None:
    """`model` (token-id inputs by keyword) to an ONNX graph at `path` whose inputs take any number of
    rows and tokens; `outputs_of` picks the tensors named `output_names` from the model's output."""
    import torch

    names = list(input_names)

    class _Outputs(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, *inputs):
            return outputs_of(self.wrapped(**dict(zip(names, inputs, strict=True))))

    example = tuple(torch.ones((example_rows, 16), dtype=torch.long) for _ in names)
    axes = {name: {0: "rows", 1: "tokens"} for name in (*names, *output_names)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The exporter restores the wrapper's train/eval mode afterwards, recursively: it must be
        # eval, or the model would come back in training mode (dropout on).
        torch.onnx.export(
            _Outputs(model).eval(), example, str(path), input_names=names, output_names=list(output_names),
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )


def weight_products(graph: Any) -> list[str]:
    """Names of an ONNX graph's matrix products by a constant weight (`x @ W`, `W` an initializer)."""
    constants = {initializer.name for initializer in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in constants]


def smooth_product_inputs(
    model: Any,
    product_names: Sequence[str],
    calibration_feeds: Sequence[dict[str, Any]],
    alpha: float,
) -> None:
    """Move the input outliers of the named matrix products (`x @ W`, `W` a constant) of the ONNX
    `model` into their weights, in place (SmoothQuant, Xiao et al. 2023): `x` is divided by a per-input-channel scale
    `s = max|x|^alpha / max|W row|^(1 - alpha)` and `W`'s rows are multiplied by it, which leaves the
    product as it is but lets int8 quantise `x` with one scale per tensor without the few large
    channels that scale would otherwise be sized for. `max|x|` is measured by running the float
    graph on `calibration_feeds`. Products reading the same `x` (query, key and value) share one
    scale, sized by the largest of their rows, so `x` is scaled and quantised once for all of them."""
    import onnx
    import onnxruntime
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = {node.name: node for node in graph.node}
    readers: dict[str, list[Any]] = {}  # input name -> the products reading it
    for name in product_names:
        readers.setdefault(nodes[name].input[0], []).append(nodes[name])
    inputs = list(readers)

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in inputs)
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feed_names = {item.name for item in session.get_inputs()}
    largest: dict[str, np.ndarray] = {}
    for feed in calibration_feeds:
        values = session.run(inputs, {name: value for name, value in feed.items() if name in feed_names})
        for input_name, value in zip(inputs, values, strict=True):
            channel_max = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            largest[input_name] = np.maximum(largest.get(input_name, channel_max), channel_max)

    weights = {initializer.name: initializer for initializer in graph.initializer}
    tiny = np.float32(1e-5)  # a channel that never fired keeps a finite scale instead of dividing by 0
    scalings = {}  # the first product reading an input -> the Mul that scales the input
    for input_name, products in readers.items():
        matrices = [numpy_helper.to_array(weights[product.input[1]]).astype(np.float32) for product in products]
        weight_max = np.max([np.abs(matrix).max(axis=1) for matrix in matrices], axis=0)
        scale = (np.maximum(largest[input_name], tiny) ** alpha / np.maximum(weight_max, tiny) ** (1 - alpha))
        scale = scale.astype(np.float32)
        scaled = f"{input_name}/smoothed"
        graph.initializer.append(numpy_helper.from_array(1 / scale, f"{input_name}/smoothing"))
        scalings[products[0].name] = helper.make_node(
            "Mul", [input_name, f"{input_name}/smoothing"], [scaled], name=f"{input_name}/smooth"
        )
        for product, matrix in zip(products, matrices, strict=True):
            weights[product.input[1]].CopyFrom(numpy_helper.from_array(matrix * scale[:, None], product.input[1]))
            product.input[0] = scaled
    # ONNX wants nodes in topological order: each scaling right before the first product reading it.
    ordered = []
    for node in graph.node:
        if node.name in scalings:
            ordered.append(scalings[node.name])
        ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)


def quantise_weights_int8(
    source: Path,
    target: Path,
    weights_only: bool = False,
    float_nodes: Sequence[str] = (),
    float_lookups: bool = False,
) -> None:
    """`source`'s matrix products with int8 weights, per output channel, into `target` (dynamic
    quantisation: activations are quantised on the fly). `weights_only` leaves products of two
    activations (attention's) in float; `float_nodes` names nodes left in float; `float_lookups`
    leaves table lookups (embeddings) in float too, quantising matrix products only."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser logs advice on the root logger (pre-process first, ...) meant for its own
    # authors' workflow; a user loading a model has nothing to act on.
    root = logging.getLogger()
    quiet = logging.Filter("spanqa.quiet")  # matches no logger name used by the quantiser: drops all
    root.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                str(source),
                str(target),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"] if float_lookups else None,
                nodes_to_exclude=list(float_nodes),
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": weights_only},
            )
    finally:
        root.removeFilter(quiet)
