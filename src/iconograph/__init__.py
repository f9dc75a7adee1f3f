"""iconograph: tell what an image collection depicts, and how sure it is.

>>> import iconograph as ig
>>> preds = ig.classify("photos/", ["cat", "dog"])          # zero-shot, cached, batched
>>> ig.write_predictions(preds, "preds.jsonl")
>>> ig.evaluate("preds.jsonl", truth="photos/")["accuracy"]
"""

from iconograph._version import __version__
from iconograph.backends import DEFAULT_MODEL, Backend, ModelNotFoundError, load_model, register_backend
from iconograph.boxes import BoxDataset, Detections, read_boxes
from iconograph.classification.classify import classify, iter_predictions
from iconograph.classification.results import LabelScore, Prediction, read_predictions, write_predictions
from iconograph.classification.zeroshot import ZeroShotClassifier, load_templates
from iconograph.description import describe
from iconograph.description.captions import Captioner, caption
from iconograph.detection import OwlDetector, detect
from iconograph.engine.embed import Embedder, ImageEmbeddings
from iconograph.engine.store import Store
from iconograph.evaluation.detections import evaluate_detections
from iconograph.evaluation.metrics import evaluate
from iconograph.reading.decode import DecodeError, read_image
from iconograph.reading.sources import Item, read_collection, read_image_folder

_LEARN = {
    "train": ("iconograph.learning.train", "train"),
    "TrainedModel": ("iconograph.learning.model_folder", "TrainedModel"),
    "make_head": ("iconograph.learning.heads", "make_head"),
    "load_head": ("iconograph.learning.heads", "load_head"),
    "split_items": ("iconograph.learning.splits", "split_items"),
    "write_full_report": ("iconograph.evaluation.report", "write_full_report"),
    "compare": ("iconograph.evaluation.compare", "compare"),
    "segment": ("iconograph.segmentation", "segment"),
    "audit": ("iconograph.auditing.run", "audit"),
}


def __getattr__(name: str):
    """Learning API, imported on first use (keeps ``import iconograph`` light)."""
    if name in _LEARN:
        import importlib

        module, attribute = _LEARN[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'iconograph' has no attribute {name!r}")


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
