"""Smoothing the inputs of int8 products (fast mode's SmoothQuant step), on a hand-built ONNX graph.

The graph: `x @ A` and `x @ B` (one shared input, like query/key/value), then `relu(x @ A) @ C`.
Channel 0 of `x` carries outliers ~100x the other channels, which is what smoothing is for.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs onnxruntime and onnx",
)

CHANNELS = 8
ALPHA = 0.7


def _weights():
    rng = np.random.default_rng(1)
    return {name: rng.normal(size=(CHANNELS, CHANNELS)).astype(np.float32) for name in "ABC"}


def _inputs(rows: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, CHANNELS)).astype(np.float32)
    x[:, 0] *= 100.0  # the outlier channel
    return x


@pytest.fixture
def graph_path(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = _weights()
    nodes = [
        helper.make_node("MatMul", ["x", "A"], ["xa"], name="product_a"),
        helper.make_node("MatMul", ["x", "B"], ["xb"], name="product_b"),
        helper.make_node("Relu", ["xa"], ["hidden"], name="relu"),
        helper.make_node("MatMul", ["hidden", "C"], ["xc"], name="product_c"),
    ]
    graph = helper.make_graph(
        nodes,
        "smoothing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, CHANNELS])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, CHANNELS]) for name in ("xb", "xc")],
        [numpy_helper.from_array(matrix, name) for name, matrix in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "graph.onnx"
    onnx.save(model, str(path))
    return path


def _run(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["xb", "xc"], {"x": x})


def _smooth(path, calibration):
    import onnx

    from spanqa.onnx_int8 import smooth_product_inputs, weight_products

    model = onnx.load(str(path))
    products = weight_products(model.graph)
    assert products == ["product_a", "product_b", "product_c"]
    smooth_product_inputs(model, products, [{"x": calibration, "unused_input": calibration}], ALPHA)
    onnx.save(model, str(path))


def test_smoothing_leaves_the_float_graph_s_outputs_as_they_were(graph_path, tmp_path):
    x = _inputs(16, seed=2)
    before = _run(graph_path, x)
    _smooth(graph_path, _inputs(32, seed=3))
    after = _run(graph_path, x)
    for expected, got in zip(before, after, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_products_sharing_an_input_share_one_scale_of_the_known_size(graph_path):
    import onnx
    from onnx import numpy_helper

    calibration = _inputs(32, seed=3)
    _smooth(graph_path, calibration)
    graph = onnx.load(str(graph_path)).graph
    scalings = [node for node in graph.node if node.op_type == "Mul"]
    assert len(scalings) == 2  # one for x (read by A and B), one for relu's output
    products = {node.name: node for node in graph.node if node.op_type == "MatMul"}
    assert products["product_a"].input[0] == products["product_b"].input[0] == scalings[0].output[0]

    weights = _weights()
    row_max = np.maximum(np.abs(weights["A"]).max(axis=1), np.abs(weights["B"]).max(axis=1))
    expected = np.abs(calibration).max(axis=0) ** ALPHA / row_max ** (1 - ALPHA)
    constants = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    np.testing.assert_allclose(1 / constants[scalings[0].input[1]], expected, rtol=1e-5)
    np.testing.assert_allclose(constants["A"], weights["A"] * expected[:, None], rtol=1e-5)
    # The outlier channel is divided by far more than the others.
    assert expected[0] > 10 * expected[1:].max()


def test_smoothing_shrinks_the_int8_error_of_inputs_with_an_outlier_channel(graph_path, tmp_path):
    from spanqa.onnx_int8 import quantise_weights_int8

    x = _inputs(64, seed=4)
    reference = _run(graph_path, x)
    plain = tmp_path / "plain-int8.onnx"
    quantise_weights_int8(graph_path, plain, weights_only=True, float_lookups=True)
    _smooth(graph_path, _inputs(32, seed=3))
    smoothed = tmp_path / "smoothed-int8.onnx"
    quantise_weights_int8(graph_path, smoothed, weights_only=True, float_lookups=True)

    def error(path):
        return max(float(np.abs(got - want).mean()) for got, want in zip(_run(path, x), reference, strict=True))

    assert error(smoothed) < 0.6 * error(plain)  # 0.41 measured
