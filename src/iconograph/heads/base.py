"""What every head shares: label encoding, feature normalisation, thresholds, decisions, files.

A head is a scikit-learn-shaped classifier on cached embeddings::

    head.fit(vectors, labels, eval_set=(val_vectors, val_labels))
    head.predict_proba(vectors)   # (n, classes) scores
    head.predict(vectors)         # [(LabelScore, ...), ...]: the JSONL contract of ``classify``

``labels`` are label names per image (``"cat"``) or label tuples (``("eagle", "zeus")``).
Hyper-parameters (C, k, ...) left as ``None`` are chosen on ``eval_set``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from iconograph.io import atomic_write_text
from iconograph.results import LabelScore
from iconograph.thresholds import DEFAULT_THRESHOLD, decide, f1_optimal_thresholds

HEAD_FILE = "head.json"

LabelsLike = Sequence[str] | Sequence[Sequence[str]]


def label_sets(y: LabelsLike) -> list[tuple[str, ...]]:
    return [(label,) if isinstance(label, str) else tuple(label) for label in y]


def is_multi_label(y: LabelsLike) -> bool:
    return any(len(labels) != 1 for labels in label_sets(y))


def binarize(y: LabelsLike, classes: Sequence[str]) -> np.ndarray:
    """(n, k) 0/1 matrix; labels outside ``classes`` are ignored."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(y), len(classes)), dtype=np.int8)
    for row, labels in enumerate(label_sets(y)):
        for label in labels:
            if label in index:
                matrix[row, index[label]] = 1
    return matrix


def class_indices(y: LabelsLike, classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[labels[0]] for labels in label_sets(y)], dtype=np.int64)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def validation_score(truth: np.ndarray, scores: np.ndarray, multi_label: bool) -> float:
    """What hyper-parameters are chosen by: accuracy (single-label) or macro mAP (multi-label)."""
    if not multi_label:
        return float(np.mean(scores.argmax(axis=1) == truth.argmax(axis=1)))
    from sklearn.metrics import average_precision_score

    present = truth.sum(axis=0) > 0
    return float(average_precision_score(truth[:, present], scores[:, present], average="macro"))


class Head(ClassifierMixin, BaseEstimator):
    """Base class: subclasses implement ``_fit(X, Y, eval_set)``, ``_proba(X)`` and their weight files."""

    kind = "head"

    def __init__(self, *, multi_label: bool | None = None, normalize: bool = True, max_labels: int | None = None):
        self.multi_label = multi_label
        self.normalize = normalize
        self.max_labels = max_labels

    # ---- fitting ----------------------------------------------------------------------

    def fit(self, X, y: LabelsLike, eval_set: tuple[np.ndarray, LabelsLike] | None = None) -> Head:
        X = self._features(X)
        self.multi_label_ = is_multi_label(y) if self.multi_label is None else bool(self.multi_label)
        self.classes_ = sorted({label for labels in label_sets(y) for label in labels})
        if len(self.classes_) < 2:
            raise ValueError(f"a head needs at least two classes; found {self.classes_}")
        self.thresholds_ = np.full(len(self.classes_), DEFAULT_THRESHOLD)
        val = None
        if eval_set is not None and len(eval_set[1]):
            val = (self._features(eval_set[0]), binarize(eval_set[1], self.classes_))
        self._fit(X, binarize(y, self.classes_), val)
        return self

    def calibrate(self, X, y: LabelsLike) -> Head:
        """Fit per-class F1-optimal thresholds on validation data (multi-label heads only)."""
        if self.multi_label_:
            self.thresholds_ = f1_optimal_thresholds(binarize(y, self.classes_), self.predict_proba(X))
        return self

    def _fit(self, X: np.ndarray, Y: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None) -> None:
        raise NotImplementedError

    # ---- predicting -------------------------------------------------------------------

    def _features(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        return l2_normalize(X) if self.normalize else X

    def predict_proba(self, X) -> np.ndarray:
        """(n, classes) scores: softmax probabilities (single-label) or per-class probabilities."""
        return self._proba(self._features(X))

    def _proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X, top_k: int | None = None) -> list[tuple[LabelScore, ...]]:
        return decide(
            self.predict_proba(X),
            self.classes_,
            multi_label=self.multi_label_,
            thresholds=self.thresholds_,
            max_labels=self.max_labels,
            top_k=top_k,
        )

    # ---- files ------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """``head.json`` (kind, parameters, classes, thresholds) plus the subclass's weight files."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_weights(directory)
        description = {
            "kind": self.kind,
            "params": _jsonable(self.get_params()),
            "classes": list(self.classes_),
            "multi_label": self.multi_label_,
            "thresholds": [float(t) for t in self.thresholds_],
            "fitted": _jsonable(self._fitted_description()),
        }
        atomic_write_text(directory / HEAD_FILE, json.dumps(description, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Head:
        directory = Path(directory)
        description = json.loads((directory / HEAD_FILE).read_text())
        head = cls(**description["params"])
        head.classes_ = list(description["classes"])
        head.multi_label_ = bool(description["multi_label"])
        head.thresholds_ = np.asarray(description["thresholds"], dtype=np.float64)
        head._load_weights(directory, description.get("fitted", {}))
        return head

    def _save_weights(self, directory: Path) -> None:
        raise NotImplementedError

    def _load_weights(self, directory: Path, fitted: dict) -> None:
        raise NotImplementedError

    def _fitted_description(self) -> dict:
        """Chosen hyper-parameters and other small fitted facts, kept in head.json."""
        return {}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
