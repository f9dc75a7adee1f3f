"""Hugging Face transformers models: CLIP, SigLIP and other dual encoders, or image backbones.

Preprocessing is the model's own ``AutoImageProcessor`` (the same object
``transformers.pipeline`` uses), so pixel values match the reference implementation exactly.
:class:`HFModel` (folder or cached hub id, fingerprints, processors, weights, one-line errors) is
shared with the OWL detector and the captioner.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

from iconograph.backends.base import Backend, ModelNotFoundError, Scoring
from iconograph.engine.fingerprint import digest, directory_digest, env_flag, installed_versions, remembered

PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
FOLDER_HINT = "pass the path of a local folder (a save_pretrained directory) as the model"
CLI_FOLDER_HINT = "pass a local folder with --model DIR (a save_pretrained directory)"


def missing_model(problem: str) -> ModelNotFoundError:
    """The error for a model that cannot be found, with the fix in Python's or the command line's terms."""
    return ModelNotFoundError(f"{problem}; {FOLDER_HINT}", cli_message=f"{problem}; {CLI_FOLDER_HINT}")


def resolve_hf_directory(spec: str) -> Path:
    """A local folder, or a hub id found in the Hugging Face cache (downloaded only when online)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise missing_model(f"{path} has no config.json, so it is not a save_pretrained folder")
        return path
    if path.exists():
        raise missing_model(f"{path} is a file, not a model folder")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise missing_model(f"model folder {spec} not found")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:
        pass
    try:
        if env_flag("HF_HUB_OFFLINE"):
            raise RuntimeError("HF_HUB_OFFLINE is set")
        return Path(snapshot_download(spec, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception:
        raise missing_model(f"model '{spec}' is not in the Hugging Face cache and could not be downloaded") from None


class HFModel:
    """A transformers model folder and what every user of one needs from it: where it is, its
    fingerprints, its processors and its weights, each failure a one-line ModelNotFoundError.

    The embedding backend, the detector and the captioner each hold one; ``kind`` tags the weights
    fingerprint so that the three never share a cache entry for the same folder.
    """

    def __init__(self, spec: str, kind: str, what: str = "model"):
        self.spec = spec
        self.kind = kind
        self.what = what  # how errors name the model: "cannot load {what} from DIR"
        self.directory = resolve_hf_directory(spec)
        self.config = json.loads((self.directory / "config.json").read_text())
        self.model_type = self.config.get("model_type", "")

    @cached_property
    def fingerprint(self) -> str:
        """Identity of every file in the folder (weights, config, tokenizer), read without loading."""
        return digest(self.kind, directory_digest(self.directory))

    def preprocess_fingerprint(self, implementation: str) -> str:
        """Identity of the image processor: its saved configs and which implementation runs them."""
        configs = [
            json.loads((self.directory / name).read_text())
            for name in PREPROCESSOR_FILES
            if (self.directory / name).is_file()
        ]
        return digest("hf-image-processor", configs, implementation)

    def processor_class_name(self, role: str, find: Callable[[], str]) -> str:
        """The name of the processor class transformers picks for this folder's ``role`` (fast and
        slow image processors give slightly different pixels), as ``find()`` gives it once.

        Which class ``AutoImageProcessor`` picks is fixed by the folder's files and the installed
        transformers, torchvision and torch, so it is remembered under their digest and versions:
        a fully cached run then needs neither transformers nor torch (seconds of imports).
        """
        key = digest(
            "processor-class", role, self.fingerprint, installed_versions("transformers", "torchvision", "torch")
        )
        return remembered(key, find, memo="processor-classes.json")

    def load(self, auto_class: str, device: str):
        """The network through ``transformers.<auto_class>``: float32, on ``device``, in eval mode."""
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # iconograph draws its own progress; keep stderr readable
        return self.from_pretrained(auto_class).float().to(device).eval()

    def from_pretrained(self, auto_class: str):
        """A processor, tokenizer or model from the folder through ``transformers.<auto_class>``."""
        import transformers

        try:
            return getattr(transformers, auto_class).from_pretrained(self.directory)
        except Exception as exc:
            detail = " ".join(str(exc).split())[:300]
            raise ModelNotFoundError(
                f"cannot load {self.what} from {self.directory} ({auto_class}): {detail}"
            ) from None


def image_preprocess(image_processor) -> Callable:
    """A function from one RGB PIL image to its CHW pixel tensor, as the processor makes it."""

    def preprocess(image):
        return image_processor(images=[image], return_tensors="pt")["pixel_values"][0]

    return preprocess


class HFProcessorJob:
    """The model side of a per-image job on one transformers folder with a processor (the
    segmenters, the captioner): its fingerprints, the processor and model loaded once, and the
    processor's exact image preprocessing. The job sets ``hf`` (an :class:`HFModel`) and
    ``device``; ``model_class`` and ``processor_class`` name the classes to load."""

    model_class = ""
    processor_class = "AutoProcessor"

    @property
    def fingerprint(self) -> str:
        return self.hf.fingerprint

    @cached_property
    def preprocess_fingerprint(self) -> str:
        return self.hf.preprocess_fingerprint(type(self.processor.image_processor).__name__)

    @cached_property
    def processor(self):
        return self.hf.from_pretrained(self.processor_class)

    @cached_property
    def model(self):
        return self.hf.load(self.model_class, self.device)

    def make_preprocess(self) -> Callable:
        return image_preprocess(self.processor.image_processor)


EDGE_KEYS = ("shortest_edge", "longest_edge", "height", "width")


def processor_target(image_processor) -> int | None:
    """The largest edge an image processor resizes or crops to (``size`` and ``crop_size``:
    shortest_edge, longest_edge, height, width), None when it names none."""
    sizes: list[int] = []
    for name in ("size", "crop_size"):
        value = getattr(image_processor, name, None)
        if isinstance(value, int):
            sizes.append(value)
        elif value is not None:
            for key in EDGE_KEYS:  # a dict or transformers' SizeDict
                edge = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
                if isinstance(edge, int):
                    sizes.append(edge)
    return max(sizes) if sizes else None


class HFBackend(Backend):
    name = "transformers"

    def __init__(self, spec: str, device: str | None = None):
        super().__init__(spec, device)
        self.hf = HFModel(spec, kind="hf")
        self.directory = self.hf.directory
        self.model_type = self.hf.model_type
        self.has_text = "text_config" in self.hf.config

    @property
    def fingerprint(self) -> str:
        return self.hf.fingerprint

    @cached_property
    def preprocess_fingerprint(self) -> str:
        # The class transformers actually picked (fast/torchvision or slow/PIL processors give
        # slightly different pixels), as the detector and captioner record it.
        name = self.hf.processor_class_name("AutoImageProcessor", lambda: type(self.image_processor).__name__)
        return self.hf.preprocess_fingerprint(name)

    @cached_property
    def image_processor(self):
        return self.hf.from_pretrained("AutoImageProcessor")

    def make_preprocess(self) -> Callable:
        return image_preprocess(self.image_processor)

    def resize_target(self) -> int | None:
        return processor_target(self.image_processor)

    @cached_property
    def model(self):
        return self.hf.load("AutoModel", self.device)

    @cached_property
    def tokenizer(self):
        return self.hf.from_pretrained("AutoTokenizer")

    def image_module(self):
        return _image_tower(self.model)

    def encode_images(self, pixels):
        import torch

        with torch.inference_mode():
            return image_features(self.model, pixels.to(self.device, non_blocking=True)).float().cpu()

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
            features = pooled(self.model.get_text_features(**tokens))
            return features.float().cpu()

    def scoring(self) -> Scoring:
        if not self.has_text:
            return super().scoring()
        scale = float(self.model.logit_scale.exp().item())
        bias = getattr(self.model, "logit_bias", None)
        return Scoring(scale, float(bias.item()) if bias is not None else None)


def image_features(model, pixels):
    """Image embeddings as ``encode_images`` computes them (and fine-tuning trains them)."""
    if hasattr(model, "get_image_features"):
        return pooled(model.get_image_features(pixel_values=pixels))
    out = model(pixel_values=pixels)  # an image-only backbone: pooled output, else the first token
    pooler = getattr(out, "pooler_output", None)
    return (pooler if pooler is not None else out.last_hidden_state[:, 0]).flatten(1)


def _image_tower(model):
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return image_features(self.model, pixel_values)

    return ImageTower()


def pooled(output):
    """transformers 5 returns a model output from get_*_features; 4.x returned the tensor."""
    return output if hasattr(output, "dim") else output.pooler_output
