"""The self-join through LanceDB (a scratch table, flat scan or its ANN index) against the exact
blocked self-join, which itself is pinned to the full similarity matrix in test_duplicates."""

import numpy as np
import pytest

from iconograph.auditing.neighbours import knn_self_join, knn_via_index, self_join
from iconograph.engine.store import Store


@pytest.fixture
def vectors():
    rng = np.random.default_rng(3)
    return rng.normal(size=(3000, 32)).astype(np.float32)


def test_flat_scan_through_lancedb_equals_exact(vectors, tmp_path):
    store = Store(tmp_path / "store")
    exact_i, exact_s = knn_self_join(vectors, 10)
    lance_i, lance_s = knn_via_index(vectors, 10, store, ann=False)
    assert lance_i.shape == exact_i.shape == (3000, 10)
    np.testing.assert_allclose(lance_s, exact_s, atol=1e-5)
    # The same neighbours, up to float32 near-ties at the k-th place (LanceDB computes its own
    # cosine): every neighbour it gives is within 1e-5 of the exact k-th similarity or better.
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = np.einsum("rd,rkd->rk", unit, unit[lance_i])
    assert (truth >= exact_s[:, -1:] - 1e-5).all()
    assert np.mean([set(a) == set(b) for a, b in zip(lance_i, exact_i)]) >= 0.99
    assert not [name for name in store.db.list_tables().tables if name.startswith("audit_scratch")]  # dropped


def test_ann_index_self_join_recall(vectors, tmp_path):
    store = Store(tmp_path / "store")
    exact_i, _ = knn_self_join(vectors, 10)
    ann_i, ann_s = knn_via_index(vectors, 10, store)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ann_i, exact_i)])
    assert recall >= 0.95, recall
    assert (ann_i != np.arange(3000)[:, None]).all()  # never its own neighbour
    assert (np.diff(ann_s, axis=1) <= 1e-6).all()  # best first
    # self_join goes through the index above its exact limit
    via_i, _ = self_join(vectors, 10, store=store, exact_limit=1000)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(via_i, exact_i)]) >= 0.95
