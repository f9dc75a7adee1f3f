"""Classification metrics of predictions against truth labels (computed by scikit-learn).

Predictions and truth are matched by resolved file path (:func:`match`, which the full report
uses too). Images whose prediction is an error
count as predicting nothing. Multi-label mAP uses the scores present in the predictions; labels
a prediction does not list score 0 (with thresholded output that makes mAP a lower bound).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from iconograph.classification.decisions import binarize
from iconograph.classification.results import Prediction, read_predictions
from iconograph.errors import DataError
from iconograph.reading.sources import Item, SourceError, labels_by_path, path_key, read_located, unique_items

NO_PREDICTION = "(none)"


def read_truth(source: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Item]:
    """An ImageFolder tree (label = parent folder) or a CSV/JSONL/COCO file with labels.

    The one loader of truth (evaluate, train, split, report): each image may appear once (two
    spellings of one file count as the same image), and some image must have a label.
    """
    if not isinstance(source, (str, os.PathLike)):
        source = list(source)
    name = (
        source
        if isinstance(source, (str, os.PathLike))
        else ", ".join(map(str, source[:2])) + " ..." * (len(source) > 2)
    )
    items = unique_items(read_located(source, image_folders=True))
    if not any(item.labels is not None for item in items):
        raise SourceError(f"{name}: no labels found (CSV/JSONL need a 'labels' column)")
    if not any(item.labels for item in items):
        raise SourceError(f"{name}: every 'labels' value is empty, so there is nothing to evaluate or learn")
    return items


@dataclass
class Matched:
    """Predictions joined with their truth (:func:`match`), as matrices over ``classes``."""

    predictions: list[Prediction]  # those with a truth item, in prediction order
    truth_labels: list[tuple[str, ...]]
    classes: list[str]
    multi_label: bool
    truth: np.ndarray  # (n, k) 0/1
    predicted: np.ndarray  # (n, k) 0/1: the labels listed (multi-label), or the first one (single-label)
    scores: np.ndarray  # (n, k): a label the prediction does not list scores 0
    counts: dict

    @property
    def sample_f1(self) -> np.ndarray:
        both = (self.truth & self.predicted).sum(axis=1)
        total = self.truth.sum(axis=1) + self.predicted.sum(axis=1)
        return np.where(total > 0, 2 * both / np.maximum(total, 1), 1.0)


def match(
    predictions: str | os.PathLike | Sequence[Prediction],
    truth: str | os.PathLike | Sequence[Item] | Mapping[str, Sequence[str]],
    *,
    multi_label: bool | None = None,
) -> Matched:
    """The one join of predictions with truth: by resolved path (:func:`path_key`), each truth
    image once (:func:`unique_items`). ``multi_label=None``: multi-label if some matched truth
    image has other than one label."""
    if isinstance(predictions, (str, os.PathLike)):
        predictions = read_predictions(predictions)
    predictions = list(predictions)
    truth_map = labels_by_path(_truth_items(truth))
    if not any(truth_map.values()):
        raise DataError("the truth has no labels: nothing to evaluate")
    keys = [path_key(p.path) for p in predictions]
    _refuse_repeated_predictions(predictions, keys)
    pairs = [(p, tuple(truth_map[key])) for p, key in zip(predictions, keys) if key in truth_map]
    if not pairs:
        raise DataError("no prediction matches a truth item by path")
    preds = [p for p, _ in pairs]
    truth_labels = [labels for _, labels in pairs]
    if multi_label is None:
        multi_label = any(len(labels) != 1 for labels in truth_labels)
    unlabelled = sum(not labels for labels in truth_labels)
    if not multi_label and unlabelled:
        raise DataError(
            f"{unlabelled} evaluated images have no truth label; single-label evaluation needs one label "
            "per image (evaluate them as multi-label, or leave them out of the truth)"
        )
    classes = sorted({lab for labels in truth_labels for lab in labels} | {ls.label for p in preds for ls in p.labels})
    index = {c: i for i, c in enumerate(classes)}
    scores = np.zeros((len(preds), len(classes)))
    for row, prediction in enumerate(preds):
        for ls in prediction.labels:
            scores[row, index[ls.label]] = max(scores[row, index[ls.label]], ls.score)
    decided = [p.label_names if multi_label else p.label_names[:1] for p in preds]
    predicted_keys = set(keys)
    counts = {
        "truth": len(truth_map),
        "predictions": len(predictions),
        "evaluated": len(pairs),
        "errors": sum(p.error is not None for p in preds),
        "missing": sum(k not in predicted_keys for k in truth_map),
        "unmatched": len(predictions) - len(pairs),
    }
    return Matched(
        preds,
        truth_labels,
        classes,
        multi_label,
        binarize(truth_labels, classes),
        binarize(decided, classes),
        scores,
        counts,
    )


def _refuse_repeated_predictions(predictions: Sequence[Prediction], keys: list[str]) -> None:
    """An image predicted twice would be counted twice: refuse it, as repeated truth rows are."""
    first: dict[str, str] = {}
    for prediction, key in zip(predictions, keys):
        if key in first:
            raise DataError(
                f"the predictions list one image twice ({first[key]!r} and {prediction.path!r}); keep one record per image"
            )
        first[key] = prediction.path


def _truth_items(truth) -> list[Item]:
    if isinstance(truth, (str, os.PathLike)):
        return read_truth(truth)
    if isinstance(truth, Mapping):
        return unique_items((str(path), Item(str(path), tuple(labels))) for path, labels in truth.items())
    return unique_items((item.path, item) for item in truth)


def evaluate(
    predictions: str | os.PathLike | Sequence[Prediction],
    truth: str | os.PathLike | Sequence[Item] | Mapping[str, Sequence[str]],
    *,
    multi_label: bool | None = None,
) -> dict:
    """Metrics for ``predictions`` (a file or a list) against ``truth`` (a source, items or a dict)."""
    return metrics_of(match(predictions, truth, multi_label=multi_label))


def metrics_of(matched: Matched) -> dict:
    """:func:`evaluate`'s metrics of an already matched set."""
    metrics = multilabel_metrics(matched) if matched.multi_label else single_label_metrics(matched)
    metrics["counts"] = dict(matched.counts)
    return metrics


def _per_class(y_true, y_pred, classes: list[str]) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=classes if isinstance(y_true[0], str) else None, zero_division=0
    )
    return {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    }


def _samples_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    if truth.shape[1] == 1:  # scikit-learn reads one column as binary, not as label sets: add an empty one
        truth, predicted = (np.hstack([m, np.zeros_like(m)]) for m in (truth, predicted))
    return float(f1_score(truth, predicted, average="samples", zero_division=0))


def _mean_average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    present = truth.sum(axis=0) > 0  # AP is undefined for classes with no positive example
    return (
        float(average_precision_score(truth[:, present], scores[:, present], average="macro")) if present.any() else 0.0
    )


def single_label_metrics(matched: Matched) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    classes = matched.classes
    y_true = [labels[0] for labels in matched.truth_labels]
    y_pred = [p.labels[0].label if p.labels else NO_PREDICTION for p in matched.predictions]
    top5 = np.mean([labels[0] in p.label_names[:5] for p, labels in zip(matched.predictions, matched.truth_labels)])
    matrix_labels = classes + ([NO_PREDICTION] if NO_PREDICTION in y_pred else [])
    return {
        "task": "single-label",
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "top5_accuracy": float(top5),
        "f1_micro": float(f1_score(y_true, y_pred, labels=classes, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "f1_samples": _samples_f1(matched.truth, matched.predicted),
        "mAP": _mean_average_precision(matched.truth, matched.scores),
        "per_class": _per_class(y_true, y_pred, classes),
        "confusion": {
            "labels": matrix_labels,
            "matrix": confusion_matrix(y_true, y_pred, labels=matrix_labels).tolist(),
        },
    }


def multilabel_metrics(matched: Matched) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    truth, predicted = matched.truth, matched.predicted
    return {
        "task": "multi-label",
        "accuracy": float(accuracy_score(truth, predicted)),  # exact set match
        "f1_micro": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "f1_samples": _samples_f1(truth, predicted),
        "mAP": _mean_average_precision(truth, matched.scores),
        "per_class": _per_class(truth, predicted, matched.classes),
    }
