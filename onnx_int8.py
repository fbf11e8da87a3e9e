"""What the int8 paths (the reader's fast mode, the int8 embedder) share: ONNX Runtime present, and
a float ONNX model's weights quantised to int8."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

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


def quantise_weights_int8(source: Path, target: Path, weights_only: bool = False) -> None:
    """`source`'s matrix products with int8 weights, per output channel, into `target` (dynamic
    quantisation: activations are quantised on the fly). `weights_only` leaves products of two
    activations (attention's) in float."""
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
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": weights_only},
            )
    finally:
        root.removeFilter(quiet)
