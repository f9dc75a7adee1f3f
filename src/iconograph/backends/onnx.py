"""ONNX image models through ONNX Runtime: ``onnx:path/model.onnx`` or any ``*.onnx`` file.

Preprocessing comes from a sidecar JSON beside the model (``model.json`` for ``model.onnx``)
holding timm's data-config keys; any key it lacks takes the default below, and the input size
defaults to the graph's static input shape when it has one::

    {"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.875,
     "crop_mode": "center", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

The embedding is the graph's first output: ``(N, D)`` as is, ``(N, C, H, W)`` average-pooled,
``(N, T, D)`` its first token. :func:`export_onnx` writes a timm backbone and its sidecar.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from iconograph.backends.base import Backend, ModelNotFoundError
from iconograph.fingerprint import digest, file_digest

PREFIX = "onnx:"
DEFAULT_DATA_CONFIG = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "crop_pct": 0.875,
    "crop_mode": "center",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}


def is_onnx_file(spec: str) -> bool:
    return spec.lower().endswith(".onnx")


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
        config = {**DEFAULT_DATA_CONFIG, **{k: v for k, v in self.sidecar.items() if k in DEFAULT_DATA_CONFIG}}
        if "input_size" not in self.sidecar:
            shape = self._graph_input_shape()
            if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
                config["input_size"] = tuple(shape[1:])
        config["input_size"] = tuple(config["input_size"])
        config["mean"], config["std"] = tuple(config["mean"]), tuple(config["std"])
        return config

    def _graph_input_shape(self) -> list:
        import onnx

        graph = onnx.load(str(self.path), load_external_data=False).graph
        initializers = {init.name for init in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initializers]
        dims = inputs[0].type.tensor_type.shape.dim if inputs else []
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]

    @cached_property
    def fingerprint(self) -> str:
        return digest("onnx", file_digest(self.path))

    @cached_property
    def preprocess_fingerprint(self) -> str:
        import timm

        return digest("onnx-transform", timm.__version__, self.data_config)

    def make_preprocess(self) -> Callable:
        from timm.data import create_transform

        return create_transform(**self.data_config)

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
        import numpy as np
        import torch

        name = self.session.get_inputs()[0].name
        output = self.session.run(None, {name: pixels.detach().cpu().numpy().astype(np.float32)})[0]
        if output.ndim == 4:
            output = output.mean(axis=(2, 3))
        elif output.ndim == 3:
            output = output[:, 0]
        return torch.from_numpy(np.ascontiguousarray(output, dtype=np.float32).reshape(len(output), -1))


def export_onnx(spec: str, path: str | Path, opset: int = 17) -> Path:
    """Export a timm backbone (``timm:...`` or a save_for_hf folder) to ONNX, with its sidecar JSON."""
    import warnings

    import torch

    from iconograph.backends import load_model
    from iconograph.io import atomic_write_text

    backend = load_model(spec, "cpu")
    if backend.name != "timm":
        raise ValueError(f"export_onnx exports timm backbones; {spec} is a {backend.name} model")
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
