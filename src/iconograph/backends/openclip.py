"""open_clip models: ``open_clip:ARCH/TAG``, ``open_clip:ARCH/path/to/checkpoint``,
``open_clip:hf-hub:org/repo`` or a local folder holding ``open_clip_config.json`` and weights.

The model comes with open_clip's own inference transform (``create_model_and_transforms``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

from iconograph.backends.base import Backend, ModelNotFoundError, Scoring
from iconograph.engine.fingerprint import digest, directory_digest, file_digest, installed_versions

PREFIX = "open_clip:"
CONFIG_NAME = "open_clip_config.json"


def is_open_clip_dir(spec: str) -> bool:
    return (Path(spec).expanduser() / CONFIG_NAME).is_file()


class OpenClipBackend(Backend):
    name = "open_clip"

    def __init__(self, spec: str, device: str | None = None):
        super().__init__(spec, device)
        body = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
        self.directory: Path | None = None
        self.checkpoint: Path | None = None
        self.pretrained: str | None = None
        if is_open_clip_dir(body):
            self.directory = Path(body).expanduser()
            self.model_name = f"local-dir:{self.directory}"
        elif body.startswith("hf-hub:"):
            self.model_name = body
        else:
            arch, _, pretrained = body.partition("/")
            self.model_name = arch
            if pretrained and Path(pretrained).expanduser().is_file():
                self.checkpoint = Path(pretrained).expanduser()
            elif pretrained and ("/" in pretrained or Path(pretrained).suffix):
                raise ModelNotFoundError(f"open_clip checkpoint {pretrained} not found")
            self.pretrained = str(self.checkpoint) if self.checkpoint else (pretrained or None)
            self._check_arch(arch)

    @staticmethod
    def _check_arch(arch: str) -> None:
        import open_clip

        if arch.replace("/", "-") not in open_clip.list_models():
            raise ModelNotFoundError(f"open_clip has no architecture '{arch}' (see open_clip.list_models())")

    @cached_property
    def fingerprint(self) -> str:
        if self.directory:
            return digest("open_clip", directory_digest(self.directory))
        if self.checkpoint:
            return digest("open_clip", self.model_name, file_digest(self.checkpoint))
        return digest("open_clip", self.model_name, self.pretrained)

    @cached_property
    def preprocess_fingerprint(self) -> str:
        # open_clip's version without importing it (and torch): a fully cached run loads neither
        version = installed_versions("open_clip_torch")["open_clip_torch"]
        if self.directory:
            config = json.loads((self.directory / CONFIG_NAME).read_text())
            vision = config.get("model_cfg", {}).get("vision_cfg", {})
            return digest("open_clip", version, config.get("preprocess_cfg"), vision.get("image_size"))
        return digest("open_clip", version, self.model_name, self.pretrained)

    @cached_property
    def _loaded(self):
        import open_clip

        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.model_name, pretrained=None if self.directory else self.pretrained, device=self.device
            )
        except Exception as exc:
            problem = f"cannot load open_clip model {self.spec}: {' '.join(str(exc).split())[:200]}"
            raise ModelNotFoundError(
                f"{problem}; pass a local folder or checkpoint as the model",
                cli_message=f"{problem}; pass a local folder or checkpoint with --model",
            ) from None
        return model.eval(), preprocess

    @property
    def model(self):
        return self._loaded[0]

    def make_preprocess(self) -> Callable:
        return self._loaded[1]

    @cached_property
    def tokenizer(self):
        import open_clip

        return open_clip.get_tokenizer(self.model_name)

    def image_module(self):
        return self.model.visual  # encode_image is the visual tower (no normalisation by default)

    def encode_images(self, pixels):
        import torch

        with torch.inference_mode():
            return self.model.encode_image(pixels.to(self.device)).float().cpu()

    def encode_texts(self, texts: Sequence[str]):
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return self.model.encode_text(tokens).float().cpu()

    def scoring(self) -> Scoring:
        bias = getattr(self.model, "logit_bias", None)
        return Scoring(float(self.model.logit_scale.exp().item()), float(bias.item()) if bias is not None else None)
