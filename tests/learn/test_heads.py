"""Heads on embeddings: parity with scikit-learn, hyper-parameter choice on validation, files."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from iconograph.classification.results import LabelScore
from iconograph.learning.heads import binarize, load_head, make_head
from iconograph.learning.heads.base import l2_normalize
from iconograph.learning.heads.estimators import load_estimator


def gaussian_mixture(n: int, classes: int = 5, dim: int = 32, seed: int = 0, spread: float = 0.6):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(classes, dim)) * spread
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.normal(size=(n, dim))).astype(np.float32), [f"class{i}" for i in y]


def multi_label(y, seed):
    partner = np.random.default_rng(seed).permutation(y)
    return [tuple(sorted({a, b})) for a, b in zip(y, partner)]


@pytest.mark.parametrize("C", [0.05, 1.0, 10.0])
def test_logistic_head_predicts_like_sklearn(C):
    X, y = gaussian_mixture(800)
    X_test, _ = gaussian_mixture(400, seed=1)
    head = make_head("logistic", C=C, normalize=False).fit(X, y)
    reference = LogisticRegression(C=C, max_iter=1000).fit(X, y)
    predicted = [labels[0].label for labels in head.decide(X_test)]
    assert list(head.classes_) == list(reference.classes_)
    assert predicted == list(reference.predict(X_test))
    # At the default tol (1e-4, both) the two L-BFGS runs stop at nearby points of the same optimum;
    # the converged test below pins the probabilities themselves.
    np.testing.assert_allclose(head.predict_proba(X_test), reference.predict_proba(X_test), atol=0.1)


def test_logistic_head_converged_probabilities_match_sklearn():
    X, y = gaussian_mixture(600)
    head = make_head("logistic", C=1.0, tol=1e-7, normalize=False).fit(X, y)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(X, y)
    np.testing.assert_allclose(head.coef_, reference.coef_, atol=2e-3)
    np.testing.assert_allclose(head.predict_proba(X), reference.predict_proba(X), atol=1e-3)  # float32 vs float64


def test_binary_and_multi_label_logistic_match_sklearn():
    X, y = gaussian_mixture(600, classes=2)
    head = make_head("logistic", C=1.0, normalize=False).fit(X, y)
    reference = LogisticRegression(C=1.0).fit(X, y)
    assert head.coef_.shape == (1, X.shape[1])  # one vector, as scikit-learn fits a binary problem
    np.testing.assert_allclose(head.predict_proba(X), reference.predict_proba(X), atol=5e-3)

    X, y = gaussian_mixture(600, classes=4)
    Y = multi_label(y, 1)
    head = make_head("logistic", C=1.0, normalize=False).fit(X, Y)
    ovr = OneVsRestClassifier(LogisticRegression(C=1.0)).fit(X, binarize(Y, head.classes_))
    assert head.multi_label_
    np.testing.assert_allclose(head.predict_proba(X), ovr.predict_proba(X), atol=5e-3)
    assert np.array_equal(head.predict_proba(X) >= 0.5, ovr.predict(X) == 1)


def test_logistic_head_chooses_C_on_validation():
    X, y = gaussian_mixture(500)
    X_val, y_val = gaussian_mixture(300, seed=2)
    head = make_head("logistic").fit(X, y, eval_set=(X_val, y_val))
    scores = head.validation_scores_
    assert len(scores) == 9  # seven decades, then the two half-decade neighbours of the best
    assert scores[f"{head.C_:.6g}"] == max(scores.values())
    refit = make_head("logistic", C=head.C_).fit(X, y)
    np.testing.assert_allclose(refit.predict_proba(X_val), head.predict_proba(X_val), atol=2e-2)


@pytest.mark.parametrize("kind", ["svm", "knn", "mlp", "voting"])
def test_heads_fit_predict_and_round_trip(kind, tmp_path):
    X, y = gaussian_mixture(400)
    X_val, y_val = gaussian_mixture(200, seed=3)
    X_test, y_test = gaussian_mixture(200, seed=4)
    head = make_head(kind).fit(X, y, eval_set=(X_val, y_val))
    proba = head.predict_proba(X_test)
    assert proba.shape == (200, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    predictions = head.decide(X_test)
    assert all(isinstance(ls, LabelScore) for row in predictions for ls in row)
    assert all([ls.score for ls in row] == sorted((ls.score for ls in row), reverse=True) for row in predictions)
    accuracy = np.mean([row[0].label == truth for row, truth in zip(predictions, y_test)])
    assert accuracy > 0.6  # chance is 0.2
    loaded = load_head(head.save(tmp_path / kind))
    np.testing.assert_array_equal(loaded.predict_proba(X_test), proba)


def test_voting_is_the_mean_of_its_members():
    X, y = gaussian_mixture(300)
    head = make_head("voting", members=("logistic", "knn")).fit(X, y)
    members = [h.predict_proba(l2_normalize(X)) for h in head.heads_]  # members get normalised vectors
    np.testing.assert_allclose(head.predict_proba(X), np.mean(members, axis=0))


@pytest.mark.parametrize("kind", ["logistic", "svm", "knn", "mlp", "voting"])
def test_multi_label_heads_calibrate_thresholds(kind, tmp_path):
    X, y = gaussian_mixture(400, classes=4)
    X_val, y_val = gaussian_mixture(200, classes=4, seed=5)
    Y, Y_val = multi_label(y, 1), multi_label(y_val, 2)
    head = make_head(kind, max_labels=2).fit(X, Y, eval_set=(X_val, Y_val)).calibrate(X_val, Y_val)
    assert head.multi_label_ and head.thresholds_.shape == (4,)
    assert not np.allclose(head.thresholds_, 0.5)
    predictions = head.decide(X_val)
    assert max(len(row) for row in predictions) <= 2
    proba = head.predict_proba(X_val)
    for row, scores in zip(predictions, proba):
        kept = {ls.label for ls in row}
        above = {c for c, s, t in zip(head.classes_, scores, head.thresholds_) if s >= t}
        assert kept <= above
    loaded = load_head(head.save(tmp_path / kind))
    np.testing.assert_array_equal(loaded.thresholds_, head.thresholds_)


class NotSklearn:
    pass


def test_skops_loader_refuses_foreign_types(tmp_path):
    import skops.io as sio

    path = tmp_path / "evil.skops"
    sio.dump({"object": NotSklearn()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_estimator(path)


def test_head_needs_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        make_head("logistic").fit(np.zeros((3, 4)), ["a", "a", "a"])
