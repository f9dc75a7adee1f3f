"""iconograph: tell what an image collection depicts, and how sure it is.

>>> import iconograph as ig
>>> preds = ig.classify("photos/", ["cat", "dog"])          # zero-shot, cached, batched
>>> ig.write_predictions(preds, "preds.jsonl")
>>> ig.evaluate("preds.jsonl", truth="photos/")["accuracy"]

Every public name is imported on first use (PEP 562 module ``__getattr__``), so ``import
iconograph`` and ``iconograph --help`` stay fast: torch, transformers, LanceDB and scikit-learn
load only when a function that needs them runs. ``from iconograph import X`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from iconograph._version import __version__

# public name -> the module that defines it
_LAZY = {
    "DEFAULT_MODEL": "iconograph.backends",
    "Backend": "iconograph.backends",
    "ModelNotFoundError": "iconograph.backends",
    "load_model": "iconograph.backends",
    "register_backend": "iconograph.backends",
    "BoxDataset": "iconograph.boxes",
    "Detections": "iconograph.boxes",
    "read_boxes": "iconograph.boxes",
    "classify": "iconograph.classification.classify",
    "iter_predictions": "iconograph.classification.classify",
    "LabelScore": "iconograph.classification.results",
    "Prediction": "iconograph.classification.results",
    "read_predictions": "iconograph.classification.results",
    "write_predictions": "iconograph.classification.results",
    "ZeroShotClassifier": "iconograph.classification.zeroshot",
    "load_templates": "iconograph.classification.zeroshot",
    "describe": "iconograph.description",
    "Captioner": "iconograph.description.captions",
    "caption": "iconograph.description.captions",
    "OwlDetector": "iconograph.detection",
    "detect": "iconograph.detection",
    "Embedder": "iconograph.engine.embed",
    "embed": "iconograph.engine.embed",
    "ImageEmbeddings": "iconograph.engine.embed",
    "Store": "iconograph.engine.store",
    "evaluate_detections": "iconograph.evaluation.detections",
    "evaluate": "iconograph.evaluation.metrics",
    "DecodeError": "iconograph.reading.decode",
    "read_image": "iconograph.reading.decode",
    "Item": "iconograph.reading.sources",
    "read_collection": "iconograph.reading.sources",
    "read_image_folder": "iconograph.reading.sources",
    "train": "iconograph.learning.train",
    "TrainedModel": "iconograph.learning.model_folder",
    "make_head": "iconograph.learning.heads",
    "load_head": "iconograph.learning.heads",
    "split_items": "iconograph.learning.splits",
    "write_full_report": "iconograph.evaluation.report",
    "compare": "iconograph.evaluation.compare",
    "segment": "iconograph.segmentation",
    "audit": "iconograph.auditing.run",
}

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name loads on first use
    from iconograph.auditing.run import audit
    from iconograph.backends import DEFAULT_MODEL, Backend, ModelNotFoundError, load_model, register_backend
    from iconograph.boxes import BoxDataset, Detections, read_boxes
    from iconograph.classification.classify import classify, iter_predictions
    from iconograph.classification.results import LabelScore, Prediction, read_predictions, write_predictions
    from iconograph.classification.zeroshot import ZeroShotClassifier, load_templates
    from iconograph.description import describe
    from iconograph.description.captions import Captioner, caption
    from iconograph.detection import OwlDetector, detect
    from iconograph.engine.embed import Embedder, ImageEmbeddings, embed
    from iconograph.engine.store import Store
    from iconograph.evaluation.compare import compare
    from iconograph.evaluation.detections import evaluate_detections
    from iconograph.evaluation.metrics import evaluate
    from iconograph.evaluation.report import write_full_report
    from iconograph.learning.heads import load_head, make_head
    from iconograph.learning.model_folder import TrainedModel
    from iconograph.learning.splits import split_items
    from iconograph.learning.train import train
    from iconograph.reading.decode import DecodeError, read_image
    from iconograph.reading.sources import Item, read_collection, read_image_folder
    from iconograph.segmentation import segment


def __getattr__(name: str):
    """A public name, imported from its module on first use and then kept in this module."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'iconograph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "DEFAULT_MODEL",
    "Backend",
    "BoxDataset",
    "Captioner",
    "DecodeError",
    "Detections",
    "Embedder",
    "ImageEmbeddings",
    "Item",
    "LabelScore",
    "ModelNotFoundError",
    "OwlDetector",
    "Prediction",
    "Store",
    "TrainedModel",
    "ZeroShotClassifier",
    "__version__",
    "audit",
    "caption",
    "classify",
    "compare",
    "describe",
    "detect",
    "embed",
    "evaluate",
    "evaluate_detections",
    "iter_predictions",
    "make_head",
    "load_head",
    "load_model",
    "load_templates",
    "read_boxes",
    "read_collection",
    "read_image",
    "read_image_folder",
    "read_predictions",
    "segment",
    "register_backend",
    "split_items",
    "train",
    "write_full_report",
    "write_predictions",
]
