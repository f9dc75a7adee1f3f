import cleanlab.filter
import numpy as np
import pytest
from sklearn.datasets import make_blobs

from iconograph.auditing.labels import find_label_issues, label_issues, out_of_fold_probabilities
from iconograph.errors import DataError


def flipped_blobs(n=600, classes=4, rate=0.1, seed=0):
    X, y = make_blobs(n_samples=n, centers=classes, n_features=16, cluster_std=2.0, random_state=seed)
    rng = np.random.default_rng(seed)
    flip = rng.choice(n, int(rate * n), replace=False)
    noisy = y.copy()
    noisy[flip] = (y[flip] + rng.integers(1, classes, len(flip))) % classes
    return X.astype(np.float32), [(f"c{v}",) for v in noisy], set(flip.tolist()), y


def test_flipped_labels_are_found():
    X, labels, flipped, clean = flipped_blobs()
    records = find_label_issues([str(i) for i in range(len(X))], X, labels)
    found = {int(r["path"]) for r in records}
    precision, recall = len(found & flipped) / len(found), len(found & flipped) / len(flipped)
    print(f"label issues: {len(flipped)} flipped, {len(found)} flagged; precision {precision:.3f} recall {recall:.3f}")
    assert precision >= 0.9 and recall >= 0.9
    qualities = [r["quality"] for r in records]
    assert qualities == sorted(qualities)
    hits = [r for r in records if int(r["path"]) in flipped]
    assert sum(r["suggested"] == f"c{clean[int(r['path'])]}" for r in hits) >= 0.9 * len(hits)
    assert all(r["label"] != r["suggested"] for r in records)


def test_parity_with_cleanlab_directly():
    X, labels, _, _ = flipped_blobs(n=300, seed=1)
    probs, classes, multi = out_of_fold_probabilities(X, labels)
    assert not multi and classes == ["c0", "c1", "c2", "c3"]
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    given = np.array([classes.index(s[0]) for s in labels])
    direct = cleanlab.filter.find_label_issues(given, probs, return_indices_ranked_by="self_confidence")
    ours = find_label_issues([str(i) for i in range(len(X))], X, labels)
    assert {int(r["path"]) for r in ours} == set(direct.tolist())
    assert {r["path"] for r in label_issues([str(i) for i in range(len(X))], labels, probs, classes, False)} == {
        r["path"] for r in ours
    }


def test_multi_label_runs():
    X, labels, flipped, _ = flipped_blobs(n=300, seed=2)
    sets = [s + ("extra",) if i % 3 == 0 else s for i, s in enumerate(labels)]
    records = find_label_issues([str(i) for i in range(len(X))], X, sets)
    assert records and all(isinstance(r["label"], list) and isinstance(r["suggested"], list) for r in records)


def test_one_class_is_a_data_error():
    with pytest.raises(DataError):
        out_of_fold_probabilities(np.ones((10, 3)), [("a",)] * 10)
