"""Per-class decision thresholds for multi-label scores, and turning scores into label sets.

F1-optimal thresholds are read off scikit-learn's ``precision_recall_curve`` on validation
scores: for each class, the score cut that maximises that class's F1. Classes without a positive
validation example keep the default threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from iconograph.classification.results import LabelScore

DEFAULT_THRESHOLD = 0.5
DEFAULT_TOP_K = 5


def check_threshold(value) -> float:
    """``value`` as a float in [0, 1]; anything else (nan, inf, 2, -0.1, text) is a ``ValueError``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:  # also false for nan
        raise ValueError(f"threshold {value!r} is not a number from 0 to 1")
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
    """(n, k) indicator of the labels kept: at/above their threshold, at most ``max_labels`` best per row."""
    scores = np.asarray(scores)
    keep = scores >= np.broadcast_to(thresholds, scores.shape[1:])
    if max_labels:
        rank = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable")
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
    """Rows of scores to sorted label tuples: top-k (single-label) or those kept by the thresholds."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")
    if multi_label:
        keep = apply_thresholds(scores, thresholds, max_labels)
        rows = [[i for i in row_order if row_keep[i]] for row_order, row_keep in zip(order, keep)]
    else:
        rows = [row_order[: top_k or DEFAULT_TOP_K] for row_order in order]
    return [tuple(LabelScore(labels[i], float(s[i])) for i in row) for row, s in zip(rows, scores)]
