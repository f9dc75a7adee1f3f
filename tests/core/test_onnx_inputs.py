"""ONNX image models as people export them (TFLite/Keras conversions): uint8/int8/float16 inputs,
NHWC layout, a fixed batch size, quantised outputs; graphs that cannot be fed are refused at load.

Parity: the embeddings equal ONNX Runtime run directly on inputs built here with PIL and numpy.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageOps

import iconograph as ig
from iconograph.backends import ModelNotFoundError, load_model
from tests.conftest import IMAGENET_SAMPLES, run_cli

SIZE = 40
IMAGES = sorted(IMAGENET_SAMPLES.glob("*.JPEG"))[:3]  # large for a 40-pixel graph: decoded exactly below


def image_graph(path, dtype=TensorProto.UINT8, shape=(1, SIZE, SIZE, 3), output="float"):
    """input -> Cast float -> (NHWC: Transpose) -> Conv -> GlobalAveragePool -> Flatten -> output.

    ``output``: "float"; "quantize" (Softmax -> QuantizeLinear, uint8 out); "dequantize" (a uint8
    output without QuantizeLinear, read by a DequantizeLinear that is the second output).
    """
    weights = np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32)
    initializers = [numpy_helper.from_array(weights, "w")]
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT)]
    if shape[-1] == 3:
        nodes.append(helper.make_node("Transpose", ["xf"], ["xt"], perm=[0, 3, 1, 2]))
    conv_input = "xt" if shape[-1] == 3 else "xf"
    nodes += [
        helper.make_node("Conv", [conv_input, "w"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], 8])]
    if output != "float":
        initializers += [
            numpy_helper.from_array(np.array(1 / 256, np.float32), "scale"),
            numpy_helper.from_array(np.array(3, np.uint8), "zero"),
            numpy_helper.from_array(np.array(255, np.float32), "full"),
        ]
        nodes.append(helper.make_node("Softmax", ["y"], ["s"]))
        if output == "quantize":
            nodes.append(helper.make_node("QuantizeLinear", ["s", "scale", "zero"], ["q"]))
        else:
            nodes += [
                helper.make_node("Mul", ["s", "full"], ["m"]),
                helper.make_node("Cast", ["m"], ["q"], to=TensorProto.UINT8),
                helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
            ]
        outputs = [helper.make_tensor_value_info("q", TensorProto.UINT8, [shape[0], 8])]
        if output == "dequantize":
            outputs.append(helper.make_tensor_value_info("dq", TensorProto.FLOAT, [shape[0], 8]))
    graph = helper.make_graph(nodes, "image", [helper.make_tensor_value_info("x", dtype, shape)], outputs, initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def resized(path, size=SIZE) -> np.ndarray:
    """The whole image resized to the graph's size: uint8 HWC, as a TFLite pipeline feeds it."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    return np.asarray(image.resize((size, size), Image.BILINEAR))


def run_directly(model_path, inputs: list[np.ndarray], batch: int | None = 1) -> np.ndarray:
    """ONNX Runtime on each prepared input on its own (a fixed batch filled with copies of it)."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": np.stack([x] * (batch or 1))})[0][:1] for x in inputs])


def test_uint8_nhwc_batch_of_one_through_the_cli(tmp_path):
    model = image_graph(tmp_path / "lite.onnx")
    out = tmp_path / "vectors.npz"
    result = run_cli(
        "embed", *IMAGES, "--model", f"onnx:{model}", "--store", tmp_path / "store", "-o", out, "--exact-decode"
    )
    assert result.returncode == 0, result.stderr
    vectors = np.load(out)["vectors"]
    expected = run_directly(model, [resized(p) for p in IMAGES])
    assert vectors.shape == (len(IMAGES), 8)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
    api = ig.Embedder(f"onnx:{model}", use_cache=False, exact_decode=True, batch_size=2, workers=0).embed_images(IMAGES)
    np.testing.assert_allclose(api.vectors, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("output", ["quantize", "dequantize"])
def test_quantized_output_is_dequantized_with_the_graphs_scale(tmp_path, output):
    model = image_graph(tmp_path / "quant.onnx", output=output)
    backend = load_model(f"onnx:{model}")
    assert (backend.output.scale, backend.output.zero_point) == (1 / 256, 3)
    vectors = (
        ig.Embedder(backend, use_cache=False, exact_decode=True, batch_size=2, workers=0).embed_images(IMAGES).vectors
    )
    raw = run_directly(model, [resized(p) for p in IMAGES])
    assert raw.dtype == np.uint8
    np.testing.assert_allclose(vectors, (raw.astype(np.float32) - 3) / 256, rtol=1e-6)


def test_int8_input_fixed_batch_of_two(tmp_path):
    model = image_graph(tmp_path / "int8.onnx", dtype=TensorProto.INT8, shape=(2, SIZE, SIZE, 3))
    vectors = (
        ig.Embedder(f"onnx:{model}", use_cache=False, exact_decode=True, batch_size=3, workers=0)
        .embed_images(IMAGES)
        .vectors
    )
    inputs = [(resized(p).astype(np.int16) - 128).astype(np.int8) for p in IMAGES]
    np.testing.assert_allclose(vectors, run_directly(model, inputs, batch=2), rtol=1e-5, atol=1e-6)


def test_float16_nchw_with_a_sidecar(tmp_path):
    model = image_graph(tmp_path / "half.onnx", dtype=TensorProto.FLOAT16, shape=("batch", 3, SIZE, SIZE))
    sidecar = {"interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "squash", "mean": [0] * 3, "std": [1] * 3}
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    vectors = ig.Embedder(f"onnx:{model}", use_cache=False, exact_decode=True, workers=0).embed_images(IMAGES).vectors
    inputs = [(resized(p).transpose(2, 0, 1) / np.float32(255)).astype(np.float16) for p in IMAGES]
    np.testing.assert_allclose(vectors, run_directly(model, inputs), rtol=1e-5, atol=1e-6)


def unfeedable(path, kind):
    if kind == "two images":
        inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in ("a", "b")]
        node = helper.make_node("Add", ["a", "b"], ["y"])
    else:
        declared = {"string": (TensorProto.STRING, [1]), "dynamic rank": (TensorProto.FLOAT, None)}
        elem, shape = declared.get(kind, (TensorProto.FLOAT, [1, 8]))  # "rank 2"
        inputs = [helper.make_tensor_value_info("x", elem, shape)]
        node = helper.make_node("Identity", ["x"], ["y"])
    output = helper.make_tensor_value_info("y", inputs[0].type.tensor_type.elem_type, None)
    graph = helper.make_graph([node], "bad", inputs, [output])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("kind", ["two images", "string", "dynamic rank", "rank 2"])
def test_unfeedable_graph_is_refused_at_load(tmp_path, kind):
    with pytest.raises(ModelNotFoundError, match="iconograph feeds|can be fed|rank"):
        load_model(f"onnx:{unfeedable(tmp_path / 'bad.onnx', kind)}")


def test_unfeedable_graph_exits_2_with_one_line(tmp_path):
    model = unfeedable(tmp_path / "two.onnx", "two images")
    result = run_cli("embed", IMAGES[0], "--model", f"onnx:{model}", "--store", tmp_path / "store")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: ONNX model {model} has 2 inputs (a, b); iconograph feeds one image"
    ]


def test_a_graph_failing_at_run_time_is_not_a_success(tmp_path):
    """Loads fine, fails in ONNX Runtime on the first batch: one line and a non-zero exit."""
    model = image_graph(tmp_path / "broken.onnx")
    proto = onnx.load(str(model))
    proto.graph.initializer.append(numpy_helper.from_array(np.array([3, -1], np.int64), "odd"))
    proto.graph.node.append(helper.make_node("Reshape", ["y", "odd"], ["r"]))  # 8 values into rows of 3
    proto.graph.output[0].CopyFrom(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    onnx.save(proto, str(model))
    result = run_cli("embed", IMAGES[0], "--model", f"onnx:{model}", "--store", tmp_path / "store")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: ONNX Runtime cannot run {model}"), result.stderr
