"""Per-class F1-optimal thresholds and decisions."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from iconograph.classification.decisions import apply_thresholds, decide, f1_optimal_thresholds


def test_thresholds_reach_the_best_f1_of_any_cut():
    rng = np.random.default_rng(0)
    truth = rng.random((300, 4)) < [0.1, 0.3, 0.5, 0.05]
    scores = np.clip(truth * rng.normal(0.6, 0.2, truth.shape) + rng.normal(0.3, 0.2, truth.shape), 0, 1)
    thresholds = f1_optimal_thresholds(truth, scores)
    for k in range(4):
        best = max(f1_score(truth[:, k], scores[:, k] >= cut) for cut in np.unique(scores[:, k]))
        assert f1_score(truth[:, k], scores[:, k] >= thresholds[k]) == best


def test_classes_without_positives_keep_the_default():
    truth = np.array([[1, 0], [0, 0], [1, 0]])
    scores = np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.1]])
    thresholds = f1_optimal_thresholds(truth, scores, default=0.5)
    assert thresholds[1] == 0.5 and thresholds[0] == 0.8


def test_cap_keeps_the_best_labels():
    scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    assert apply_thresholds(scores, 0.5).tolist() == [[True, True, True, False]]
    assert apply_thresholds(scores, 0.5, max_labels=2).tolist() == [[True, True, False, False]]


def test_cap_counts_only_labels_that_pass_their_threshold():
    scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    kept = apply_thresholds(scores, np.array([0.95, 0.5, 0.5, 0.5]), max_labels=1)
    assert kept.tolist() == [[False, True, False, False]]  # "a" fails its threshold, so "b" is the best kept


def test_zero_shot_and_heads_decide_alike():
    """The zero-shot classifier's label tuples are decide()'s on the same scores (one decision)."""
    from iconograph.classification.zeroshot import ZeroShotClassifier

    scores = np.random.default_rng(0).random((20, 4))
    labels = ["a", "b", "c", "d"]
    for multi_label in (False, True):
        clf = ZeroShotClassifier(labels, multi_label=multi_label, threshold={"a": 0.7, "b": 0.3}, top_k=2)
        expected = decide(
            scores, labels, multi_label=multi_label, thresholds=np.array([0.7, 0.3, 0.5, 0.5]), max_labels=2, top_k=2
        )
        assert clf.decide_rows(scores) == expected
        assert [clf.decide(row) for row in scores] == expected


def test_decide_single_and_multi_label():
    scores = np.array([[0.1, 0.7, 0.2]])
    single = decide(scores, ["a", "b", "c"], multi_label=False, top_k=2)
    assert [(ls.label, ls.score) for ls in single[0]] == [("b", 0.7), ("c", 0.2)]
    multi = decide(scores, ["a", "b", "c"], multi_label=True, thresholds=np.array([0.05, 0.9, 0.2]))
    assert [ls.label for ls in multi[0]] == ["c", "a"]
