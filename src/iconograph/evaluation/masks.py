"""Semantic segmentation metrics from PNG label maps: per-class IoU, mean IoU, pixel accuracy.

Predictions and truth are folders of label-map PNGs (``segment --format png``: 0 background,
class ``i`` of ``classes.txt`` as ``i + 1``), matched by file stem. One confusion matrix over all
pixels of all matched images (``np.bincount`` of ``truth * K + prediction``, which is what
``sklearn.metrics.confusion_matrix`` counts, without its per-call overhead on millions of
pixels); IoU of class ``c`` is ``TP / (TP + FP + FN)``, mean IoU averages the classes that occur
in the truth or the predictions, pixel accuracy is the trace over the total. Truth pixels equal
to ``ignore_index`` (255, the Pascal VOC border value) are left out.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from iconograph.boxes.masks import read_label_map
from iconograph.reading.textfiles import SourceError, read_lines

IGNORE_INDEX = 255


def is_label_map_folder(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and any(path.glob("*.png"))


def _read_pairs(predictions: Path, truth: Path) -> tuple[dict, dict, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Prediction and truth PNGs by stem, and the (stem, truth, prediction) maps of the stems in both."""
    predicted = {p.stem: p for p in sorted(predictions.glob("*.png"))}
    truths = {p.stem: p for p in sorted(truth.glob("*.png"))}
    pairs = []
    for stem, truth_path in truths.items():
        if stem in predicted:
            t, p = read_label_map(truth_path), read_label_map(predicted[stem])
            if t.shape != p.shape:
                raise SourceError(f"{predicted[stem]}: size {p.shape[::-1]} differs from the truth's {t.shape[::-1]}")
            pairs.append((stem, t, p))
    return predicted, truths, pairs


def _confusion(t: np.ndarray, p: np.ndarray, size: int, ignore_index: int | None) -> np.ndarray:
    keep = t != ignore_index if ignore_index is not None else np.ones(t.shape, bool)
    t, p = t[keep].astype(np.int64), np.minimum(p[keep], size - 1).astype(np.int64)
    return np.bincount(t * size + p, minlength=size * size).reshape(size, size)


def _iou(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU ``TP / (TP + FP + FN)``; NaN for a class in neither truth nor predictions."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=1) + confusion.sum(axis=0) - tp
    return np.divide(tp, union, out=np.full(len(tp), np.nan), where=union > 0)


def label_map_image_quality(
    predictions: str | os.PathLike, truth: str | os.PathLike, *, ignore_index: int | None = IGNORE_INDEX
) -> list[tuple[float, str, np.ndarray, np.ndarray]]:
    """``(mean IoU, stem, truth map, predicted map)`` per matched image, best first: the image's
    own mean IoU over the classes present in its truth or prediction (for showing the best and
    worst images; the metrics pool all pixels)."""
    _, _, pairs = _read_pairs(Path(predictions), Path(truth))
    scored = []
    for stem, t, p in pairs:
        valid = t[t != ignore_index] if ignore_index is not None else t
        size = int(max(valid.max(initial=0), p.max(initial=0))) + 1
        iou = _iou(_confusion(t, p, size, ignore_index))
        scored.append((float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0, stem, t, p))
    scored.sort(key=lambda row: (-row[0], row[1]))
    return scored


def read_class_names(folder: Path) -> list[str] | None:
    names = folder / "classes.txt"
    if not names.is_file():
        return None
    return [line.strip() for _, line in read_lines(names) if line.strip()]


def evaluate_label_maps(
    predictions: str | os.PathLike, truth: str | os.PathLike, *, ignore_index: int | None = IGNORE_INDEX
) -> dict:
    """``pixel_accuracy``, ``mIoU`` and ``per_class`` (``IoU``, truth ``support`` in pixels) of
    the prediction PNGs against the truth PNGs with the same file stem."""
    predictions, truth = Path(predictions), Path(truth)
    if not is_label_map_folder(truth):
        raise SourceError(f"{truth}: the truth for label maps must be a folder of label-map PNGs")
    predicted, truths, named_pairs = _read_pairs(predictions, truth)
    names = read_class_names(truth) or read_class_names(predictions)
    pairs = [(t, p) for _, t, p in named_pairs]
    top = max([int(a.max(initial=0)) for pair in pairs for a in pair if a.size] + [0])
    if ignore_index is not None and top == ignore_index:
        top = max([int(a[a != ignore_index].max(initial=0)) for pair in pairs for a in pair] + [0])
    size = max(top + 1, len(names) + 1 if names else 0)
    confusion = np.zeros((size, size), np.int64)
    for t, p in pairs:
        confusion += _confusion(t, p, size, ignore_index)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    iou = _iou(confusion)
    labels = ["background"] + list(names or []) + [f"class {i}" for i in range(len(names or []) + 1, size)]
    total = confusion.sum()
    return {
        "task": "semantic segmentation",
        "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
        "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
        "per_class": {
            labels[c]: {"IoU": None if np.isnan(iou[c]) else float(iou[c]), "support": int(support[c])}
            for c in range(size)
        },
        "confusion": confusion.tolist(),
        "counts": {
            "truth": len(truths),
            "predictions": len(predicted),
            "evaluated": len(pairs),
            "missing": len(truths) - len(pairs),
        },
    }
