"""Classification metrics of predictions against truth labels (computed by scikit-learn).

Predictions and truth are matched by resolved file path. Images whose prediction is an error
count as predicting nothing. Multi-label mAP uses the scores present in the predictions; labels
a prediction does not list score 0 (with thresholded output that makes mAP a lower bound).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

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


def evaluate(
    predictions: str | os.PathLike | Sequence[Prediction],
    truth: str | os.PathLike | Sequence[Item] | Mapping[str, Sequence[str]],
    *,
    multi_label: bool | None = None,
) -> dict:
    """Metrics for ``predictions`` (a file or a list) against ``truth`` (a source, items or a dict)."""
    if isinstance(predictions, (str, os.PathLike)):
        predictions = read_predictions(predictions)
    if isinstance(truth, (str, os.PathLike)):
        truth = read_truth(truth)
    elif isinstance(truth, Mapping):
        truth = unique_items((str(path), Item(str(path), tuple(labels))) for path, labels in truth.items())
    else:
        truth = unique_items((item.path, item) for item in truth)
    truth_map = labels_by_path(truth)
    if not any(truth_map.values()):
        raise DataError("the truth has no labels: nothing to evaluate")
    matched = [(p, truth_map[path_key(p.path)]) for p in predictions if path_key(p.path) in truth_map]
    if not matched:
        raise DataError("no prediction matches a truth item by path")
    if multi_label is None:
        multi_label = any(len(labels) != 1 for _, labels in matched)
    metrics = multilabel_metrics(matched) if multi_label else single_label_metrics(matched)
    predicted_keys = {path_key(p.path) for p in predictions}
    metrics["counts"] = {
        "truth": len(truth_map),
        "predictions": len(predictions),
        "evaluated": len(matched),
        "errors": sum(p.error is not None for p, _ in matched),
        "missing": sum(k not in predicted_keys for k in truth_map),
        "unmatched": len(predictions) - len(matched),
    }
    return metrics


def _classes(matched) -> list[str]:
    return sorted({lab for _, labels in matched for lab in labels} | {ls.label for p, _ in matched for ls in p.labels})


def _score_matrix(matched, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    scores = np.zeros((len(matched), len(classes)))
    for row, (prediction, _) in enumerate(matched):
        for ls in prediction.labels:
            scores[row, index[ls.label]] = max(scores[row, index[ls.label]], ls.score)
    return scores


def _binarize(label_sets, classes: list[str]) -> np.ndarray:
    from sklearn.preprocessing import MultiLabelBinarizer

    return MultiLabelBinarizer(classes=classes).fit_transform(label_sets)


def _per_class(y_true, y_pred, classes: list[str]) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=classes if isinstance(y_true[0], str) else None, zero_division=0
    )
    return {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    }


def _mean_average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    present = truth.sum(axis=0) > 0  # AP is undefined for classes with no positive example
    return (
        float(average_precision_score(truth[:, present], scores[:, present], average="macro")) if present.any() else 0.0
    )


def single_label_metrics(matched) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    classes = _classes(matched)
    y_true = [labels[0] for _, labels in matched]
    y_pred = [p.labels[0].label if p.labels else NO_PREDICTION for p, _ in matched]
    top5 = np.mean([labels[0] in p.label_names[:5] for p, labels in matched])
    truth_bin = _binarize([labels for _, labels in matched], classes)
    pred_bin = _binarize([[y] if y != NO_PREDICTION else [] for y in y_pred], classes)
    matrix_labels = classes + ([NO_PREDICTION] if NO_PREDICTION in y_pred else [])
    return {
        "task": "single-label",
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "top5_accuracy": float(top5),
        "f1_micro": float(f1_score(y_true, y_pred, labels=classes, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "f1_samples": float(f1_score(truth_bin, pred_bin, average="samples", zero_division=0)),
        "mAP": _mean_average_precision(truth_bin, _score_matrix(matched, classes)),
        "per_class": _per_class(y_true, y_pred, classes),
        "confusion": {
            "labels": matrix_labels,
            "matrix": confusion_matrix(y_true, y_pred, labels=matrix_labels).tolist(),
        },
    }


def multilabel_metrics(matched) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    classes = _classes(matched)
    truth_bin = _binarize([labels for _, labels in matched], classes)
    pred_bin = _binarize([p.label_names for p, _ in matched], classes)
    per_class = _per_class(truth_bin, pred_bin, classes)
    return {
        "task": "multi-label",
        "accuracy": float(accuracy_score(truth_bin, pred_bin)),  # exact set match
        "f1_micro": float(f1_score(truth_bin, pred_bin, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(truth_bin, pred_bin, average="macro", zero_division=0)),
        "f1_samples": float(f1_score(truth_bin, pred_bin, average="samples", zero_division=0)),
        "mAP": _mean_average_precision(truth_bin, _score_matrix(matched, classes)),
        "per_class": per_class,
    }
