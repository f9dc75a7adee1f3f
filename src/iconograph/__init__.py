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
    "ZeroShotClassifier",
    "__version__",
    "caption",
    "classify",
    "describe",
    "detect",
    "evaluate",
    "evaluate_detections",
    "iter_predictions",
    "load_model",
    "load_templates",
    "read_boxes",
    "read_collection",
    "read_image",
    "read_image_folder",
    "read_predictions",
    "register_backend",
    "write_predictions",
]
