"""What the int8 paths (the reader's fast mode, the int8 embedder) share: ONNX Runtime present, a
transformers model exported to ONNX, and a float ONNX model's weights quantised to int8."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
