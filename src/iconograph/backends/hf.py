"""Hugging Face transformers models: CLIP, SigLIP and other dual encoders, or image backbones.

Preprocessing is the model's own ``AutoImageProcessor`` (the same object
``transformers.pipeline`` uses), so pixel values match the reference implementation exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

from iconograph.backends.base import Backend, ModelNotFoundError, Scoring
from iconograph.engine.fingerprint import digest, directory_digest

PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def resolve_hf_directory(spec: str) -> Path:
    """A local folder, or a hub id found in the Hugging Face cache (downloaded only when online)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a folder but has no config.json: not a save_pretrained model folder")
        return path
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelNotFoundError(f"model folder {spec} not found")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:
        pass
    try:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
            raise RuntimeError("HF_HUB_OFFLINE is set")
        return Path(snapshot_download(spec, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception:
        raise ModelNotFoundError(
            f"model '{spec}' is not in the Hugging Face cache and could not be downloaded; "
            f"pass a local folder with --model DIR (a save_pretrained directory)"
        ) from None


class HFBackend(Backend):
    name = "transformers"

    def __init__(self, spec: str, device: str | None = None):
        super().__init__(spec, device)
        self.directory = resolve_hf_directory(spec)
        self.config = json.loads((self.directory / "config.json").read_text())
        self.model_type = self.config.get("model_type", "")
        self.has_text = "text_config" in self.config

    @cached_property
    def fingerprint(self) -> str:
        return digest("hf", directory_digest(self.directory))

    @cached_property
    def preprocess_fingerprint(self) -> str:
        configs = [
            json.loads((self.directory / name).read_text())
            for name in PREPROCESSOR_FILES
            if (self.directory / name).is_file()
        ]
        return digest("hf-image-processor", configs, self._image_processor_backend)

    @property
    def _image_processor_backend(self) -> str:
        """Which implementation AutoImageProcessor picks (transformers prefers torchvision)."""
        from importlib.util import find_spec

        return "torchvision" if find_spec("torchvision") else "pil"

    @cached_property
    def image_processor(self):
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(self.directory)

    def make_preprocess(self) -> Callable:
        processor = self.image_processor

        def preprocess(image):
            return processor(images=[image], return_tensors="pt")["pixel_values"][0]

        return preprocess

    @cached_property
    def model(self):
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # iconograph draws its own progress; keep stderr readable

        try:
            model = AutoModel.from_pretrained(self.directory).float()
        except Exception as exc:
            raise ModelNotFoundError(
                f"cannot load model from {self.directory}: {' '.join(str(exc).split())[:300]}"
            ) from None
        return model.to(self.device).eval()

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.directory)

    def image_module(self):
        return _image_tower(self.model)

    def encode_images(self, pixels):
        import torch

        with torch.inference_mode():
            return _image_features(self.model, pixels.to(self.device, non_blocking=True)).float().cpu()

    def encode_texts(self, texts: Sequence[str]):
        import torch

        if not self.has_text:
            return super().encode_texts(texts)
        # The same tokenisation as transformers' zero-shot pipeline for this model type.
        kwargs = {"padding": True, "truncation": True}
        if "siglip" in self.model_type:
            kwargs = {"padding": "max_length", "max_length": 64, "truncation": True}
        tokens = self.tokenizer(list(texts), return_tensors="pt", **kwargs).to(self.device)
        with torch.inference_mode():
            features = _pooled(self.model.get_text_features(**tokens))
            return features.float().cpu()

    def scoring(self) -> Scoring:
        if not self.has_text:
            return super().scoring()
        scale = float(self.model.logit_scale.exp().item())
        bias = getattr(self.model, "logit_bias", None)
        return Scoring(scale, float(bias.item()) if bias is not None else None)


def _image_features(model, pixels):
    if hasattr(model, "get_image_features"):
        return _pooled(model.get_image_features(pixel_values=pixels))
    out = model(pixel_values=pixels)  # an image-only backbone: pooled output, else the first token
    pooled = getattr(out, "pooler_output", None)
    return (pooled if pooled is not None else out.last_hidden_state[:, 0]).flatten(1)


def _image_tower(model):
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return _image_features(self.model, pixel_values)

    return ImageTower()


def _pooled(output):
    """transformers 5 returns a model output from get_*_features; 4.x returned the tensor."""
    return output if hasattr(output, "dim") else output.pooler_output
