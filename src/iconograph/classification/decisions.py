"""Scores and the decisions taken on them, each written once: L2 normalisation of embeddings,
softmax / sigmoid of logits (SciPy's), per-class thresholds, and scores to label sets (top-k for
single-label, thresholds and ``max_labels`` for multi-label).

F1-optimal thresholds are read off scikit-learn's ``precision_recall_curve`` on validation
scores: for each class, the score cut that maximises that class's F1. Classes without a positive
validation example keep the default threshold.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from iconograph.classification.results import LabelScore
from iconograph.errors import OptionError

DEFAULT_THRESHOLD = 0.5
DEFAULT_TOP_K = 5
LABEL_SET_TYPES = (tuple, list, set, frozenset)


def label_sets(y) -> list[tuple]:
    """One label per row (``"cat"``) or label sets per row (``("eagle", "zeus")``) as tuples."""
    return [tuple(label) if isinstance(label, LABEL_SET_TYPES) else (label,) for label in y]


def binarize(y, classes: Sequence) -> np.ndarray:
    """(n, k) 0/1 matrix of labels (or label sets) per row; labels outside ``classes`` are ignored."""
    from sklearn.preprocessing import MultiLabelBinarizer

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "unknown class", UserWarning)
        return MultiLabelBinarizer(classes=list(classes)).fit_transform(label_sets(y)).astype(np.int8)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit-length vectors along the last axis (zero rows stay zero); keeps the dtype."""
    vectors = np.asarray(vectors)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


# softmax and sigmoid are written out in NumPy, with the formulas scipy.special uses (softmax:
# shift by the row maximum; expit: 1 / (1 + exp(-x))), because importing scipy.special costs about
# 0.4 s, which a fully cached ``classify`` would otherwise spend on two lines of arithmetic.
# tests/core/test_startup.py checks them against scipy (equal within 2 units in the last place).


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (``scipy.special.softmax(logits, axis=-1)``)."""
    logits = np.asarray(logits)
    shifted = np.exp(logits - np.amax(logits, axis=-1, keepdims=True))
    return shifted / np.sum(shifted, axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function (``scipy.special.expit``); exp(-x) overflowing to inf gives 0, as there."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(logits)))


def check_threshold(value) -> float:
    """``value`` as a float in [0, 1]; anything else (nan, inf, 2, -0.1, text) is an ``OptionError``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:  # also false for nan
        raise OptionError(f"threshold {value!r} is not a number from 0 to 1")
    return number


def f1_optimal_thresholds(truth: np.ndarray, scores: np.ndarray, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """``truth`` (n, k) in {0, 1} and ``scores`` (n, k) to one threshold per class."""
    from sklearn.metrics import precision_recall_curve

    truth = np.asarray(truth)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.full(truth.shape[1], default, dtype=np.float64)
    for k in range(truth.shape[1]):
        if not truth[:, k].any():
            continue
        precision, recall, cuts = precision_recall_curve(truth[:, k], scores[:, k])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        thresholds[k] = cuts[int(np.argmax(f1))]
    return thresholds


def apply_thresholds(scores: np.ndarray, thresholds: np.ndarray | float, max_labels: int | None = None) -> np.ndarray:
    """(n, k) indicator of the labels kept: at/above their threshold, then the ``max_labels`` best
    of those per row."""
    scores = np.asarray(scores)
    keep = scores >= np.broadcast_to(thresholds, scores.shape[1:])
    if max_labels:
        kept_scores = np.where(keep, scores, -np.inf)  # a label below its threshold takes no place
        rank = np.argsort(np.argsort(-kept_scores, axis=1, kind="stable"), axis=1, kind="stable")
        keep &= rank < max_labels
    return keep


def decide(
    scores: np.ndarray,
    labels: Sequence[str],
    *,
    multi_label: bool,
    thresholds: np.ndarray | float = DEFAULT_THRESHOLD,
    max_labels: int | None = None,
    top_k: int | None = None,
) -> list[tuple[LabelScore, ...]]:
    """Rows of scores to label tuples, best first: the ``top_k`` best (single-label, 5 by default)
    or those kept by :func:`apply_thresholds` (multi-label)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")
    if multi_label:
        keep = apply_thresholds(scores, thresholds, max_labels)
        rows = [[i for i in row_order if row_keep[i]] for row_order, row_keep in zip(order, keep)]
    else:
        rows = [row_order[: top_k or DEFAULT_TOP_K] for row_order in order]
    return [tuple(LabelScore(labels[i], float(s[i])) for i in row) for row, s in zip(rows, scores)]
