"""Suspect labels: out-of-fold probabilities from a head on the cached embeddings, judged by
cleanlab's confident learning.

Every labelled image is scored by a head (default ``make_head("logistic")``, L2-normalised
features, ``C = 1``) trained on the other folds of a stratified :data:`FOLDS`-fold split (fewer
folds when the rarest class has fewer images; plain K-fold for multi-label). Single-label:
``cleanlab.filter.find_label_issues(labels, pred_probs, return_indices_ranked_by="self_confidence")``
and the quality ``cleanlab.rank.get_label_quality_scores`` (the probability of the given label);
multi-label: ``cleanlab.multilabel_classification.filter.find_label_issues`` and
``cleanlab.multilabel_classification.rank.get_label_quality_scores``. The suggested label is
the head's most probable class (multi-label: the classes at probability 0.5 or more).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from iconograph.auditing.defaults import FOLDS, SEED
from iconograph.errors import DataError


def out_of_fold_probabilities(
    vectors: np.ndarray,
    labels: Sequence[Sequence[str]],
    *,
    folds: int = FOLDS,
    seed: int = SEED,
    head: str = "logistic",
    **head_params,
) -> tuple[np.ndarray, list[str], bool]:
    """``(pred_probs, classes, multi_label)``: each row scored by a head that never saw it."""
    from iconograph.learning.heads import make_head

    sets = [tuple(labels_) for labels_ in labels]
    multi_label = any(len(s) != 1 for s in sets)
    classes = sorted({label for s in sets for label in s})
    if len(classes) < 2:
        raise DataError(f"suspect labels need at least two classes in the truth; found {classes}")
    column = {c: i for i, c in enumerate(classes)}
    X = np.asarray(vectors, dtype=np.float32)
    if multi_label:
        target = np.zeros((len(sets), len(classes)), dtype=np.int8)
        for row, s in enumerate(sets):
            target[row, [column[c] for c in s]] = 1
        splitter = KFold(n_splits=max(2, min(folds, len(sets))), shuffle=True, random_state=seed)
        splits = splitter.split(X)
    else:
        y = np.array([column[s[0]] for s in sets])
        rarest = int(np.bincount(y).min())
        if len(y) < 4:
            raise DataError(f"suspect labels need at least 4 labelled images; found {len(y)}")
        splitter = StratifiedKFold(n_splits=max(2, min(folds, rarest)), shuffle=True, random_state=seed)
        splits = splitter.split(X, y)
    probs = np.zeros((len(sets), len(classes)), dtype=np.float64)
    params = {"C": 1.0, **head_params}
    for train, test in splits:
        model = make_head(head, multi_label=multi_label, **params)
        if multi_label:
            model.fit(X[train], target[train])
            probs[np.ix_(test, np.asarray(model.classes_, dtype=int))] = model.predict_proba(X[test])
        else:
            model.fit(X[train], np.array(classes, dtype=object)[y[train]].astype(str))
            cols = [column[c] for c in model.classes_]
            probs[np.ix_(test, cols)] = model.predict_proba(X[test])
    if not multi_label:
        probs /= probs.sum(axis=1, keepdims=True)  # a class missing from a training fold: renormalise
    return probs, classes, multi_label


def label_issues(
    paths: Sequence[str],
    labels: Sequence[Sequence[str]],
    pred_probs: np.ndarray,
    classes: Sequence[str],
    multi_label: bool,
) -> list[dict]:
    """Records ``{"path", "label", "suggested", "quality"}`` for the images cleanlab flags, lowest
    label quality first."""
    column = {c: i for i, c in enumerate(classes)}
    if multi_label:
        from cleanlab.multilabel_classification.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        given = [[column[c] for c in s] for s in labels]
        flagged = find_label_issues(given, pred_probs, return_indices_ranked_by="self_confidence")
        quality = get_label_quality_scores(given, pred_probs)
    else:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        given = np.array([column[s[0]] for s in labels])
        flagged = find_label_issues(given, pred_probs, return_indices_ranked_by="self_confidence")
        quality = get_label_quality_scores(given, pred_probs)
    records = []
    for i in flagged:
        i = int(i)
        if multi_label:
            suggested = [classes[c] for c in np.nonzero(pred_probs[i] >= 0.5)[0]]
        else:
            suggested = classes[int(pred_probs[i].argmax())]
        records.append(
            {
                "path": paths[i],
                "label": list(labels[i]) if multi_label else labels[i][0],
                "suggested": suggested,
                "quality": round(float(quality[i]), 6),
            }
        )
    records.sort(key=lambda r: r["quality"])
    return records


def find_label_issues(
    paths: Sequence[str], vectors: np.ndarray, labels: Sequence[Sequence[str]], **options
) -> list[dict]:
    """Out-of-fold probabilities, then :func:`label_issues`."""
    probs, classes, multi_label = out_of_fold_probabilities(vectors, labels, **options)
    return label_issues(paths, labels, probs, classes, multi_label)
