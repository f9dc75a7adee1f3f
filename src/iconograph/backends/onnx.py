"""ONNX image models through ONNX Runtime: ``onnx:path/model.onnx`` or any ``*.onnx`` file.

Preprocessing comes from a sidecar JSON beside the model (``model.json`` for ``model.onnx``)
holding timm's data-config keys; any key it lacks takes the default below, and the input size
defaults to the graph's static input shape when it has one::

    {"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.875,
     "crop_mode": "center", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

The graph's one input is fed as it is declared: NCHW or NHWC (the axis of size 3), float32,
float16, or uint8/int8 as graphs converted from TFLite or Keras take them (pixels 0..255, the
whole image resized to the input size, no normalisation: a quantised graph carries its own scale;
int8 is the pixel minus 128). A fixed batch dimension is fed in chunks of that size. A graph that
cannot be fed an image is refused when the model is loaded.

The embedding is the graph's first output: ``(N, D)`` as is, ``(N, C, H, W)`` average-pooled,
``(N, T, D)`` its first token; a uint8/int8 output is dequantised with the graph's own scale and
zero point. :func:`export_onnx` writes a timm backbone and its sidecar.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from iconograph.backends.base import Backend, ModelNotFoundError
from iconograph.engine.fingerprint import digest, file_digest
from iconograph.errors import OptionError

PREFIX = "onnx:"
DEFAULT_DATA_CONFIG = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "crop_pct": 0.875,
    "crop_mode": "center",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}
# Integer inputs come from TFLite/Keras, whose classifiers take the whole image resized (bilinear).
INTEGER_INPUT_CONFIG = {"interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "squash"}
FEEDABLE = (np.float32, np.float16, np.uint8, np.int8)


@dataclass(frozen=True)
class GraphInput:
    """How the graph's image input is declared; dims are None where dynamic."""

    name: str
    dtype: np.dtype
    layout: str  # "NCHW" or "NHWC"
    batch: int | None
    size: tuple[int, int] | None  # (height, width)

    @property
    def integer(self) -> bool:
        return self.dtype.kind in "iu"


@dataclass(frozen=True)
class GraphOutput:
    dtype: np.dtype
    scale: float | None = None  # quantisation of a uint8/int8 output, when the graph names it
    zero_point: float = 0.0


def read_graph(path: Path) -> tuple[GraphInput, GraphOutput]:
    """The image input and first output of an ONNX graph; ModelNotFoundError when it cannot be fed."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise ModelNotFoundError(f"{path} is not an ONNX model: {' '.join(str(exc).split())[:200]}") from None
    initializers = {init.name: init for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ModelNotFoundError(f"ONNX model {path} has {len(inputs)} inputs ({names}); iconograph feeds one image")
    given = inputs[0]
    refuse = f"ONNX model {path}: input {given.name!r}"
    if given.type.WhichOneof("value") != "tensor_type":
        raise ModelNotFoundError(f"{refuse} is not a tensor; iconograph feeds one image tensor")
    tensor = given.type.tensor_type
    dtype = np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type)) if tensor.elem_type else None
    if dtype is None or dtype.type not in FEEDABLE:
        raise ModelNotFoundError(
            f"{refuse} is of type {dtype or 'unknown'}; images can be fed as float32, float16, uint8 or int8"
        )
    if not tensor.HasField("shape") or len(tensor.shape.dim) != 4:
        rank = len(tensor.shape.dim) if tensor.HasField("shape") else "unknown"
        raise ModelNotFoundError(f"{refuse} has rank {rank}; an image batch has rank 4 (NCHW or NHWC)")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]
    if dims[1] in (1, 3) or (dims[1] is None and dims[3] is None):
        layout, channels, size = "NCHW", dims[1], dims[2:]
    elif dims[3] in (1, 3):
        layout, channels, size = "NHWC", dims[3], dims[1:3]
    else:
        raise ModelNotFoundError(f"{refuse} has shape {dims}: no channel axis of size 3 first or last")
    if channels == 1:
        raise ModelNotFoundError(f"{refuse} takes 1-channel (grayscale) images; iconograph feeds RGB")
    image_input = GraphInput(given.name, dtype, layout, dims[0], tuple(size) if None not in size else None)
    return image_input, _read_output(graph, initializers)


def _read_output(graph, initializers) -> GraphOutput:
    from onnx import numpy_helper
    from onnx.helper import tensor_dtype_to_np_dtype

    output = graph.output[0]
    dtype = np.dtype(tensor_dtype_to_np_dtype(output.type.tensor_type.elem_type))
    if dtype.kind not in "iu":
        return GraphOutput(dtype)
    constants = {init.name: numpy_helper.to_array(init) for init in initializers.values()}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    # The quantisation is that of the QuantizeLinear making the output or a DequantizeLinear reading it.
    for node in graph.node:
        made = node.op_type == "QuantizeLinear" and node.output[0] == output.name
        read = node.op_type == "DequantizeLinear" and node.input[0] == output.name
        if (made or read) and node.input[1] in constants:
            scale = constants[node.input[1]]
            zero = constants.get(node.input[2] if len(node.input) > 2 else "", np.zeros(()))  # optional input
            if scale.size == 1 and zero.size == 1:
                return GraphOutput(dtype, float(scale.reshape(())), float(zero.reshape(())))
    return GraphOutput(dtype)  # scale unknown: the raw integers, as float32, still rank alike


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


class OnnxBackend(Backend):
    name = "onnx"
    has_text = False

    def __init__(self, spec: str, device: str | None = None):
        super().__init__(spec, device)
        self.path = Path(spec.removeprefix(PREFIX)).expanduser()
        if not self.path.is_file():
            raise ModelNotFoundError(f"ONNX model {self.path} not found")
        self.path = self.path.resolve()
        self.input, self.output = read_graph(self.path)

    @cached_property
    def sidecar(self) -> dict:
        path = sidecar_path(self.path)
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except ValueError as exc:
            raise ModelNotFoundError(f"{path}: not valid JSON ({exc})") from None

    @cached_property
    def data_config(self) -> dict:
        config = {**DEFAULT_DATA_CONFIG, **(INTEGER_INPUT_CONFIG if self.input.integer else {})}
        config.update({k: v for k, v in self.sidecar.items() if k in DEFAULT_DATA_CONFIG})
        if "input_size" not in self.sidecar and self.input.size:
            config["input_size"] = (3, *self.input.size)
        config["input_size"] = tuple(config["input_size"])
        config["mean"], config["std"] = tuple(config["mean"]), tuple(config["std"])
        return config

    @cached_property
    def fingerprint(self) -> str:
        return digest("onnx", file_digest(self.path))

    @cached_property
    def preprocess_fingerprint(self) -> str:
        import timm

        if self.input.integer:
            return digest("onnx-transform", timm.__version__, self.data_config, "uint8")
        return digest("onnx-transform", timm.__version__, self.data_config)

    def make_preprocess(self) -> Callable:
        from timm.data import create_transform

        # normalize=False: timm hands back the resized pixels as a uint8 CHW tensor
        return create_transform(**self.data_config, normalize=not self.input.integer)

    @cached_property
    def session(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One session, all cores for its operators; batches run one after another.
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            raise ModelNotFoundError(
                f"cannot load ONNX model {self.path}: {' '.join(str(exc).split())[:200]}"
            ) from None

    def encode_images(self, pixels):
        import torch

        array = pixels.detach().cpu().numpy()
        if self.input.layout == "NHWC":
            array = array.transpose(0, 2, 3, 1)
        if self.input.dtype == np.int8:
            array = array.astype(np.int16) - 128
        array = np.ascontiguousarray(array, dtype=self.input.dtype)
        step = self.input.batch or len(array)
        output = np.concatenate([self._run(array[start : start + step]) for start in range(0, len(array), step)])
        if output.ndim == 4:
            output = output.mean(axis=(2, 3))
        elif output.ndim == 3:
            output = output[:, 0]
        return torch.from_numpy(np.ascontiguousarray(output, dtype=np.float32).reshape(len(output), -1))

    def _run(self, array: np.ndarray) -> np.ndarray:
        """The first output for one chunk; a fixed-batch graph gets its last chunk padded."""
        count = len(array)
        if self.input.batch and count < self.input.batch:
            array = np.concatenate([array, np.zeros((self.input.batch - count, *array.shape[1:]), array.dtype)])
        try:
            output = self.session.run(None, {self.input.name: array})[0][:count]
        except Exception as exc:  # onnxruntime's errors are neither ValueError nor one line
            raise ModelNotFoundError(
                f"ONNX Runtime cannot run {self.path}: {' '.join(str(exc).split())[:300]}"
            ) from None
        if self.output.scale is not None:
            return (output.astype(np.float32) - self.output.zero_point) * self.output.scale
        return output


def export_onnx(spec: str, path: str | Path, opset: int = 17) -> Path:
    """Export a timm backbone (``timm:...`` or a save_for_hf folder) to ONNX, with its sidecar JSON."""
    import warnings

    import torch

    from iconograph.backends import load_model
    from iconograph.engine.files import atomic_write_text

    backend = load_model(spec, "cpu")
    if backend.name != "timm":
        raise OptionError(f"export_onnx exports timm backbones; {spec} is a {backend.name} model")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, *backend.data_config["input_size"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
        torch.onnx.export(
            backend.model,
            (example,),
            str(path),
            input_names=["pixels"],
            output_names=["features"],
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in backend.data_config.items()}
    atomic_write_text(sidecar_path(path), json.dumps(config, indent=1))
    return path
