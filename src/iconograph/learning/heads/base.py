"""What every head shares: label encoding, feature normalisation, thresholds, decisions, files.

A head is a scikit-learn classifier on cached embeddings, with scikit-learn's meanings::

    head.fit(vectors, y, eval_set=(val_vectors, val_y))
    head.predict_proba(vectors)   # (n, classes) scores in ``classes_`` order
    head.predict(vectors)         # class labels (n,), or a 0/1 indicator (n, classes) if multi-label
    head.score(vectors, y)        # accuracy (subset accuracy if multi-label)
    head.decide(vectors)          # [(LabelScore, ...), ...]: the JSONL contract of ``classify``

``y`` is one label per row (any hashable: ``"cat"``, ``3``), label sets per row (tuples or lists:
``("eagle", "zeus")``, multi-label), or a 2-D NumPy 0/1 indicator matrix (multi-label, scikit-learn's
convention; ``classes_`` are then the column indices ``0 ... k-1``). A list of lists is read as label
sets, never as an indicator matrix. Hyper-parameters (C, k, ...) left as ``None`` are chosen on
``eval_set``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from iconograph.classification.decisions import (
    DEFAULT_THRESHOLD,
    LABEL_SET_TYPES,
    apply_thresholds,
    binarize,
    f1_optimal_thresholds,
    l2_normalize,
    label_sets,
)
from iconograph.classification.decisions import decide as decide_labels
from iconograph.classification.results import LabelScore
from iconograph.engine.files import atomic_write_text
from iconograph.errors import DataError

HEAD_FILE = "head.json"

LabelsLike = Sequence[str] | Sequence[Sequence[str]]


def has_label_sets(y) -> bool:
    """Whether ``y`` lists label sets (tuples, lists...) rather than one label per row."""
    if y is None or (hasattr(y, "dtype") and y.dtype != object):
        return False
    try:
        return any(isinstance(label, LABEL_SET_TYPES) for label in y)
    except TypeError:  # not iterable: an array-like, read by scikit-learn
        return False


def is_indicator(y) -> bool:
    """A 2-D 0/1 matrix with more than one column (a single column is a column vector of labels)."""
    if y is None or has_label_sets(y):
        return False
    shape = y.shape if hasattr(y, "shape") else np.asarray(y).shape
    return len(shape) == 2 and shape[1] > 1


def is_multi_label(y: LabelsLike) -> bool:
    return any(len(labels) != 1 for labels in label_sets(y))


def class_indices(y: LabelsLike, classes: Sequence) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[labels[0]] for labels in label_sets(y)], dtype=np.int64)


def validation_score(truth: np.ndarray, scores: np.ndarray, multi_label: bool) -> float:
    """What hyper-parameters are chosen by: accuracy (single-label) or macro mAP (multi-label)."""
    if not multi_label:
        return float(np.mean(scores.argmax(axis=1) == truth.argmax(axis=1)))
    from sklearn.metrics import average_precision_score

    present = truth.sum(axis=0) > 0
    return float(average_precision_score(truth[:, present], scores[:, present], average="macro"))


class Head(ClassifierMixin, BaseEstimator):
    """Base class: subclasses implement ``_fit(X, Y, val)``, ``_proba(X)`` and their weight files.

    ``classes_`` is the sorted array of the labels seen in ``fit``.
    """

    kind = "head"

    def __init__(self, *, multi_label: bool | None = None, normalize: bool = True, max_labels: int | None = None):
        self.multi_label = multi_label
        self.normalize = normalize
        self.max_labels = max_labels

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    # ---- fitting ----------------------------------------------------------------------

    def fit(self, X, y, eval_set: tuple | None = None) -> Head:
        X, Y, multi_label = self._encode_fit(X, y)
        self.multi_label_ = multi_label if self.multi_label is None else bool(self.multi_label)
        if len(self.classes_) < 2:
            n = len(self.classes_)
            raise DataError(f"a head needs at least two classes; found {n} class: {self.classes_}")
        self.thresholds_ = np.full(len(self.classes_), DEFAULT_THRESHOLD)
        val = None
        if eval_set is not None and len(eval_set[1]):
            val = (self._features(eval_set[0]), self._indicator(eval_set[1]))
        self._fit(self._normalized(X), Y, val)
        return self

    def _encode_fit(self, X, y) -> tuple[np.ndarray, np.ndarray, bool]:
        """Validated features, the (n, classes) 0/1 target and whether ``y`` is multi-label; sets ``classes_``."""
        if has_label_sets(y):
            X = validate_data(self, X, dtype=np.float32)
            check_consistent_length(X, y)
            sets = label_sets(y)
            self.classes_ = np.array(sorted({label for labels in sets for label in labels}))
            return X, binarize(sets, self.classes_), is_multi_label(sets)
        if is_indicator(y):
            X, y = validate_data(self, X, y, multi_output=True, accept_sparse=False, dtype=np.float32)
            if type_of_target(y) != "multilabel-indicator":
                raise ValueError("a 2-D target must be a 0/1 indicator matrix (one column per class)")
            self.classes_ = np.arange(y.shape[1])
            return X, (np.asarray(y) != 0).astype(np.int8), True
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, index = np.unique(y, return_inverse=True)
        return X, np.eye(len(self.classes_), dtype=np.int8)[index], False

    def _indicator(self, y) -> np.ndarray:
        """Any form of ``y`` as an (n, classes) 0/1 matrix in ``classes_`` order."""
        if is_indicator(y):
            y = np.asarray(y)
            if y.shape[1] != len(self.classes_):
                raise ValueError(f"the indicator matrix has {y.shape[1]} columns; the head has {len(self.classes_)}")
            return (y != 0).astype(np.int8)
        return binarize(y, self.classes_)

    def calibrate(self, X, y) -> Head:
        """Fit per-class F1-optimal thresholds on validation data (multi-label heads only)."""
        if self.multi_label_:
            self.thresholds_ = f1_optimal_thresholds(self._indicator(y), self.predict_proba(X))
        return self

    def _fit(self, X: np.ndarray, Y: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None) -> None:
        raise NotImplementedError

    # ---- predicting -------------------------------------------------------------------

    def _normalized(self, X: np.ndarray) -> np.ndarray:
        return l2_normalize(X) if self.normalize else X

    def _features(self, X) -> np.ndarray:
        """Features of a fitted head: validated (shape, finite) and normalised if the head normalises."""
        check_is_fitted(self)
        return self._normalized(validate_data(self, X, reset=False, dtype=np.float32))

    def predict_proba(self, X) -> np.ndarray:
        """(n, classes) scores: softmax probabilities (single-label) or per-class probabilities."""
        return self._proba(self._features(X))

    def _proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X) -> np.ndarray:
        """Class labels (n,), or for multi-label the (n, classes) 0/1 matrix kept by ``thresholds_`` and ``max_labels``."""
        proba = self.predict_proba(X)
        if self.multi_label_:
            return apply_thresholds(proba, self.thresholds_, self.max_labels).astype(np.int64)
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy (scikit-learn's), subset accuracy for multi-label; ``y`` in any form ``fit`` takes."""
        from sklearn.metrics import accuracy_score

        check_is_fitted(self)
        if self.multi_label_:
            return float(accuracy_score(self._indicator(y), self.predict(X), sample_weight=sample_weight))
        if has_label_sets(y):
            y = [labels[0] for labels in label_sets(y)]
        return super().score(X, y, sample_weight=sample_weight)

    def decide(self, X, top_k: int | None = None) -> list[tuple[LabelScore, ...]]:
        """Sorted label tuples per row (the ``classify`` contract): top-k, or those kept by the thresholds."""
        return decide_labels(
            self.predict_proba(X),
            self.classes_.tolist(),  # plain Python labels in the LabelScores
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
            "classes": _jsonable(self.classes_),
            "multi_label": self.multi_label_,
            "thresholds": [float(t) for t in self.thresholds_],
            "n_features_in": _jsonable(getattr(self, "n_features_in_", None)),
            "fitted": _jsonable(self._fitted_description()),
        }
        atomic_write_text(directory / HEAD_FILE, json.dumps(description, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Head:
        directory = Path(directory)
        description = json.loads((directory / HEAD_FILE).read_text())
        head = cls(**description["params"])
        head.classes_ = np.asarray(description["classes"])
        head.multi_label_ = bool(description["multi_label"])
        head.thresholds_ = np.asarray(description["thresholds"], dtype=np.float64)
        if description.get("n_features_in") is not None:  # heads saved before it was recorded skip the check
            head.n_features_in_ = int(description["n_features_in"])
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
