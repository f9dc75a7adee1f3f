"""timm image backbones: ``timm:NAME`` (pretrained weights from the Hugging Face cache),
``timm:NAME/path/to/checkpoint`` (a local ``.safetensors``/``.pth`` file), or a local folder
written by ``timm.models.save_for_hf`` (``config.json`` with an ``architecture`` key + weights).

The classifier is removed (``num_classes=0``), so an embedding is timm's pooled pre-logits
feature vector. Preprocessing is timm's own eval transform for the weights'
``pretrained_cfg`` (``resolve_data_config`` + ``create_transform``). Image-only: no text tower.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from iconograph.backends.base import Backend, ModelNotFoundError
from iconograph.engine.fingerprint import digest, directory_digest, file_digest
from iconograph.errors import OptionError

PREFIX = "timm:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_timm_dir(spec: str) -> bool:
    """A ``save_for_hf`` folder: timm's config.json names an ``architecture`` (transformers' never does)."""
    config = Path(spec.removeprefix(PREFIX)).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        return "architecture" in json.loads(config.read_text())
    except ValueError:
        return False


class TimmBackend(Backend):
    name = "timm"
    has_text = False

    def __init__(self, spec: str, device: str | None = None):
        super().__init__(spec, device)
        body = spec.removeprefix(PREFIX)
        self.directory: Path | None = None
        self.checkpoint: Path | None = None
        if is_timm_dir(body):
            self.directory = Path(body).expanduser().resolve()
            self.architecture = json.loads((self.directory / "config.json").read_text())["architecture"]
        else:
            arch, _, checkpoint = body.partition("/")
            self.architecture = arch
            if checkpoint:
                self.checkpoint = Path(checkpoint).expanduser()
                if not self.checkpoint.is_file():
                    raise ModelNotFoundError(f"timm checkpoint {checkpoint} not found")
                self.checkpoint = self.checkpoint.resolve()
            elif Path(body).expanduser().exists():
                raise ModelNotFoundError(f"{body} is not a timm model folder (config.json with 'architecture')")
        self._check_arch()

    def _check_arch(self) -> None:
        import timm

        name = self.architecture.split(".")[0]
        if not timm.is_model(name):
            raise ModelNotFoundError(f"timm has no architecture '{name}' (see timm.list_models())")

    @cached_property
    def pretrained_cfg(self) -> dict:
        """The weights' data/pretrained config, read without building the network."""
        if self.directory:
            return json.loads((self.directory / "config.json").read_text()).get("pretrained_cfg", {})
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(self.architecture)
        return cfg.to_dict() if cfg is not None else {}

    @cached_property
    def data_config(self) -> dict:
        from timm.data import resolve_data_config

        return resolve_data_config(pretrained_cfg=self.pretrained_cfg)

    @cached_property
    def fingerprint(self) -> str:
        if self.directory:
            return digest("timm", directory_digest(self.directory))
        if self.checkpoint:
            return digest("timm", self.architecture, file_digest(self.checkpoint))
        return digest("timm", self.architecture, self.pretrained_cfg.get("hf_hub_id"), self._hub_file_digest())

    def _hub_file_digest(self) -> str | None:
        hub_id = self.pretrained_cfg.get("hf_hub_id")
        if not hub_id:
            return None
        from huggingface_hub import try_to_load_from_cache

        for name in ("open_clip_model.safetensors", *WEIGHT_FILES):
            found = try_to_load_from_cache(hub_id, name)
            if isinstance(found, str):
                return file_digest(found)
        return None

    @cached_property
    def preprocess_fingerprint(self) -> str:
        import timm

        return digest("timm-transform", timm.__version__, self.data_config)

    def make_preprocess(self) -> Callable:
        from timm.data import create_transform

        return create_transform(**self.data_config)

    @cached_property
    def model(self):
        import timm

        try:
            if self.directory:
                model = timm.create_model(f"local-dir:{self.directory}", pretrained=True, num_classes=0)
            elif self.checkpoint:
                model = timm.create_model(self.architecture, pretrained=False, num_classes=0)
                _load_backbone_weights(model, self.checkpoint)
            else:
                model = timm.create_model(self.architecture, pretrained=True, num_classes=0)
        except Exception as exc:
            raise ModelNotFoundError(
                f"cannot load timm model {self.spec}: {' '.join(str(exc).split())[:200]}; "
                f"pass timm:ARCH/path/to/checkpoint or a save_for_hf folder"
            ) from None
        return model.float().to(self.device).eval()

    def image_module(self):
        return self.model

    def encode_images(self, pixels):
        import torch

        with torch.inference_mode():
            return self.model(pixels.to(self.device)).float().cpu()


def _load_backbone_weights(model, checkpoint: Path) -> None:
    """Load a full checkpoint into a headless model: only the classifier's weights may be left over."""
    from timm.models import load_state_dict

    state = load_state_dict(str(checkpoint))
    result = model.load_state_dict(state, strict=False)
    classifier = model.pretrained_cfg.get("classifier") or "fc"
    classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(classifiers)]
    if result.missing_keys or unexpected:
        wrong = (result.missing_keys or unexpected)[:3]
        raise OptionError(f"{checkpoint} does not fit {model.pretrained_cfg.get('architecture')}: keys {wrong}")
