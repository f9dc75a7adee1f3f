"""The one surface every model backend has (as timm gives every model the same surface)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from iconograph.errors import OptionError, UserError

if TYPE_CHECKING:  # torch is imported only when a model really runs
    import torch
    from PIL import Image

DECODE_VERSION = "1"  # part of every preprocessing fingerprint: bump when decode.py changes pixels
# Part of the image cache key of embeddings decoded at reduced scale (never mixed with exact ones):
# bump when the reduced decode (reading/decode.py draft_reduced, reduce_to) or its bound changes.
REDUCED_DECODE_VERSION = "reduced-decode-1"


class ModelNotFoundError(UserError):
    """A model that cannot be found or loaded; ``str(error)`` is one line for the user."""


@dataclass(frozen=True)
class Scoring:
    """How a contrastive model turns cosine similarity into a logit: ``scale * cos + bias``."""

    logit_scale: float
    logit_bias: float | None = None  # SigLIP-style models (sigmoid loss) have a bias

    @property
    def sigmoid(self) -> bool:
        return self.logit_bias is not None


def resolve_device(device: str | None) -> str:
    import torch

    if not device or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"--device {device} was asked for, but this machine has no CUDA device; use --device cpu")
    return device


class Backend(ABC):
    """A loaded (or lazily loadable) model with its exact preprocessing.

    Subclasses compute ``fingerprint`` and ``preprocess_fingerprint`` without loading weights,
    so that a fully cached run never builds the network.
    """

    name: str = "backend"
    has_text: bool = True  # False for image-only backbones (timm, ONNX image models)

    def __init__(self, spec: str, device: str | None = None):
        self.spec = spec
        self._device = device

    @cached_property
    def device(self) -> str:
        return resolve_device(self._device)

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Identity of the weights, config and tokenizer."""

    @property
    @abstractmethod
    def preprocess_fingerprint(self) -> str:
        """Identity of the pixel pipeline from a decoded RGB image to the model's input tensor."""

    @abstractmethod
    def make_preprocess(self) -> Callable[[Image.Image], torch.Tensor]:
        """A function from an RGB PIL image to one CHW input tensor. Safe to run in workers."""

    @abstractmethod
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embeddings (not normalised) for a batch of preprocessed images, as float32 on the CPU."""

    def image_module(self) -> torch.nn.Module:
        """The image tower as a module mapping preprocessed pixels to embeddings (for export)."""
        raise NotImplementedError(f"{self.spec} cannot export its image tower")

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError(f"{self.spec} has no text tower: it cannot embed text")

    def scoring(self) -> Scoring:
        raise NotImplementedError(f"{self.spec} has no text tower: it cannot score labels")

    @property
    def cache_key(self) -> str:
        from iconograph.engine.fingerprint import digest

        return digest(self.fingerprint, self.preprocess_fingerprint, DECODE_VERSION)

    def image_cache_key(self, exact_decode: bool = False) -> str:
        """The key of cached image embeddings: :attr:`cache_key` for exact decoding, another for reduced."""
        from iconograph.engine.fingerprint import digest

        return self.cache_key if exact_decode else digest(self.cache_key, REDUCED_DECODE_VERSION)

    def resize_target(self) -> int | None:
        """The largest edge length the preprocessing resizes or crops to (224 for CLIP ViT-B/32),
        read from its transform; None when unknown (then images are always decoded exactly)."""
        return transform_target(self.make_preprocess())

    def decode_min_size(self) -> int | None:
        """The shorter edge an image may be reduced to before preprocessing: twice the resize
        target, so that the model's own resize still antialiases."""
        target = self.resize_target()
        return 2 * target if target else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def transform_target(transform) -> int | None:
    """The largest ``size`` of the resize and crop steps of a torchvision-style ``Compose``
    (open_clip's and timm's transforms), None when it has none."""
    sizes: list[int] = []
    for step in getattr(transform, "transforms", [transform]):
        size = getattr(step, "size", None)
        if isinstance(size, int):
            sizes.append(size)
        elif isinstance(size, (tuple, list)):
            sizes.extend(int(s) for s in size if isinstance(s, (int, float)))
    return max(sizes) if sizes else None


def set_torch_threads(threads: int | None = None) -> None:
    """Use every core for the model's matrix work (torch defaults to physical cores only)."""
    import torch

    wanted = threads or len(os.sched_getaffinity(0))
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
