"""One registry, one factory: ``load_model(spec)`` returns a :class:`Backend` for any supported model.

Spec forms::

    openai/clip-vit-base-patch32          Hugging Face hub id (cache first, download when online)
    ./my-clip                             a save_pretrained folder (or an open_clip or timm folder)
    hf:org/name                           explicitly transformers
    open_clip:ViT-B-32/laion2b_s34b_b79k  open_clip architecture + pretrained tag or checkpoint file
    open_clip:hf-hub:org/repo             an open_clip model on the hub
    timm:resnet50, timm:NAME/ckpt.pth     timm image backbones
    onnx:model.onnx, model.onnx           ONNX image models (ONNX Runtime)

The detector and the captioner are not backends (they do not embed), but they resolve, fingerprint
and load their transformers folders the same way: :class:`iconograph.backends.hf.HFModel`.
"""

from __future__ import annotations

from collections.abc import Callable

from iconograph.backends.base import Backend, ModelNotFoundError, Scoring, resolve_device

DEFAULT_MODEL = "openai/clip-vit-base-patch32"

Factory = Callable[[str, "str | None"], Backend]
_PREFIXED: dict[str, Factory] = {}
_DETECTORS: list[tuple[Callable[[str], bool], Factory]] = []


def register_backend(prefix: str | None = None, *, detect: Callable[[str], bool] | None = None):
    """Register a factory for ``prefix:...`` specs and/or for specs that ``detect`` recognises."""

    def decorator(factory: Factory) -> Factory:
        if prefix:
            _PREFIXED[prefix] = factory
        if detect:
            _DETECTORS.append((detect, factory))
        return factory

    return decorator


def load_model(spec: str | Backend = DEFAULT_MODEL, device: str | None = None) -> Backend:
    """Resolve a model spec to a backend. Weights load lazily, on first use."""
    if isinstance(spec, Backend):
        return spec
    spec = str(spec)
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in _PREFIXED:
        return _PREFIXED[prefix](spec, device)
    for detect, factory in _DETECTORS:
        if detect(spec):
            return factory(spec, device)
    from iconograph.backends.hf import HFBackend

    return HFBackend(spec, device)


@register_backend("hf")
def _hf(spec: str, device: str | None) -> Backend:
    from iconograph.backends.hf import HFBackend

    return HFBackend(spec.removeprefix("hf:"), device)


def _is_open_clip_dir(spec: str) -> bool:
    from iconograph.backends.openclip import is_open_clip_dir

    return is_open_clip_dir(spec)


@register_backend("open_clip", detect=_is_open_clip_dir)
def _open_clip(spec: str, device: str | None) -> Backend:
    from iconograph.backends.openclip import OpenClipBackend

    return OpenClipBackend(spec, device)


def _is_timm_dir(spec: str) -> bool:
    from iconograph.backends.timm import is_timm_dir

    return is_timm_dir(spec)


@register_backend("timm", detect=_is_timm_dir)
def _timm(spec: str, device: str | None) -> Backend:
    from iconograph.backends.timm import TimmBackend

    return TimmBackend(spec, device)


def _is_onnx_file(spec: str) -> bool:
    return spec.lower().endswith(".onnx")


@register_backend("onnx", detect=_is_onnx_file)
def _onnx(spec: str, device: str | None) -> Backend:
    from iconograph.backends.onnx import OnnxBackend

    return OnnxBackend(spec, device)


__all__ = [
    "DEFAULT_MODEL",
    "Backend",
    "ModelNotFoundError",
    "Scoring",
    "load_model",
    "register_backend",
    "resolve_device",
]
