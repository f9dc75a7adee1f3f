"""The trainable image tower of a backend: the same forward as ``Backend.encode_images``, its
parameters in ordered block groups (stem first) for freezing, its pixel statistics for the
training transform, and a way to save it back as a folder the model registry loads.

Supported: timm backbones (groups from timm's own ``group_matcher``) and transformers models
(CLIP/SigLIP image towers and image-only backbones; groups = embeddings, then encoder layers).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from torch import nn

from iconograph.backends.base import Backend
from iconograph.errors import OptionError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")


class TrainableEncoder(nn.Module):
    """Wraps a backend's network; ``forward(pixels)`` gives the embeddings the backend gives."""

    def __init__(self, backend: Backend):
        super().__init__()
        self.backend = backend

    def block_groups(self) -> list[list[nn.Parameter]]:
        raise NotImplementedError

    def data_config(self) -> dict:
        """timm-style data config: input_size, interpolation, mean, std."""
        raise NotImplementedError

    def save(self, directory: Path) -> Path:
        raise NotImplementedError

    def freeze(self, blocks: int) -> None:
        """Freeze the stem and the first ``blocks`` blocks (0: train everything; < 0: freeze all)."""
        groups = self.block_groups()
        frozen = groups if blocks < 0 else (groups[: blocks + 1] if blocks > 0 else [])
        frozen_ids = {id(p) for group in frozen for p in group}
        for group in groups:
            for parameter in group:
                parameter.requires_grad_(id(parameter) not in frozen_ids)


class TimmEncoder(TrainableEncoder):
    def __init__(self, backend):
        super().__init__(backend)
        self.model = backend.model

    def forward(self, pixels):
        return self.model(pixels)

    def block_groups(self):
        from timm.models import group_parameters

        named = dict(self.model.named_parameters())
        grouped = group_parameters(self.model, self.model.group_matcher(coarse=True))
        return [[named[name] for name in grouped[key]] for key in sorted(grouped)]

    def data_config(self):
        return dict(self.backend.data_config)

    def save(self, directory):
        from timm.models import save_for_hf

        data_config = {
            k: self.backend.data_config[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct")
        }
        save_for_hf(self.model, str(directory), safe_serialization=True, data_config=data_config)
        return Path(directory)


class HFEncoder(TrainableEncoder):
    def __init__(self, backend):
        super().__init__(backend)
        self.model = backend.model
        for name, parameter in self.model.named_parameters():
            if name.startswith(("text_model.", "text_projection", "logit_scale", "logit_bias")):
                parameter.requires_grad_(False)  # only the image tower trains

    def forward(self, pixels):
        from iconograph.backends.hf import image_features

        return image_features(self.model, pixels)

    def block_groups(self):
        stem, tail, layers = [], [], {}
        for name, parameter in self.model.named_parameters():
            if name.startswith(("text_model.", "text_projection", "logit_scale", "logit_bias")):
                continue
            match = re.search(r"\.(?:layers|layer|blocks)\.(\d+)\.", name)
            if match:
                layers.setdefault(int(match.group(1)), []).append(parameter)
            elif "embed" in name or "pre_layrnorm" in name:
                stem.append(parameter)
            else:
                tail.append(parameter)
        return [stem, *(layers[i] for i in sorted(layers)), tail]

    def data_config(self):
        processor = self.backend.image_processor
        crop = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
        height = crop.get("height") or crop.get("shortest_edge") or 224
        width = crop.get("width") or crop.get("shortest_edge") or height
        return {
            "input_size": (3, int(height), int(width)),
            "interpolation": "bicubic",
            "mean": tuple(processor.image_mean),
            "std": tuple(processor.image_std),
        }

    def save(self, directory):
        directory = Path(directory)
        self.model.save_pretrained(directory)
        for source in self.backend.directory.iterdir():  # tokenizer and image processor files
            if source.is_file() and source.suffix not in WEIGHT_SUFFIXES and not (directory / source.name).exists():
                shutil.copy2(source, directory / source.name)
        return directory


def trainable_encoder(backend: Backend) -> TrainableEncoder:
    if backend.name == "timm":
        return TimmEncoder(backend)
    if backend.name == "transformers":
        return HFEncoder(backend)
    raise OptionError(
        f"fine-tuning needs a timm or transformers backbone; {backend.spec} is a {backend.name} model "
        f"(train a head on its embeddings instead: --head logistic)"
    )


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["TrainableEncoder", "count_trainable", "trainable_encoder"]
