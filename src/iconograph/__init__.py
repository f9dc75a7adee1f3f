"""iconograph: tell what an image collection depicts, and how sure it is.

>>> import iconograph as ig
>>> preds = ig.classify("photos/", ["cat", "dog"])          # zero-shot, cached, batched
>>> ig.write_predictions(preds, "preds.jsonl")
>>> ig.evaluate("preds.jsonl", truth="photos/")["accuracy"]
"""

from iconograph._version import __version__
from iconograph.backends import DEFAULT_MODEL, Backend, ModelNotFoundError, load_model, register_backend
from iconograph.boxes import BoxDataset, Detections, evaluate_detections, read_boxes
from iconograph.caption import Captioner, caption
from iconograph.classify import classify, iter_predictions
from iconograph.collection import Item, read_collection, read_image_folder
from iconograph.decode import DecodeError, read_image
from iconograph.describe import describe
from iconograph.detect import OwlDetector, detect
from iconograph.embed import Embedder, ImageEmbeddings
from iconograph.metrics import evaluate
from iconograph.results import LabelScore, Prediction, read_predictions, write_predictions
from iconograph.store import Store
from iconograph.zeroshot import ZeroShotClassifier, load_templates

_LEARN = {
    "train": ("iconograph.training", "train"),
    "TrainedModel": ("iconograph.trained_model", "TrainedModel"),
    "make_head": ("iconograph.heads", "make_head"),
    "load_head": ("iconograph.heads", "load_head"),
    "split_items": ("iconograph.splits", "split_items"),
    "write_full_report": ("iconograph.report", "write_full_report"),
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
    "caption",
    "classify",
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
    "register_backend",
    "split_items",
    "train",
    "write_full_report",
    "write_predictions",
]
