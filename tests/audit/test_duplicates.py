from itertools import combinations

import numpy as np
import pytest

from iconograph.auditing.duplicates import PHASH_DISTANCE, find_duplicates, near_pairs
from iconograph.auditing.images import ImageFacts, collect_facts
from iconograph.auditing.neighbours import knn_self_join
from tests.audit.planted import DATA, plant

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared imagenet-samples not present")


def cluster_pairs(records) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for r in records for p in combinations(r["paths"], 2)}


def test_planted_copies_are_found_by_hash_tiers(tmp_path):
    paths, origin = plant(tmp_path / "images", 40)
    facts = collect_facts(paths, rotations=True)
    assert all(f.error is None for f in facts)
    records = find_duplicates(facts)  # no vectors: identical + perceptual tiers only
    truth = {tuple(sorted(p)) for p in combinations(paths, 2) if origin[p[0]] == origin[p[1]]}
    found = cluster_pairs(records)
    hits = len(found & truth)
    precision, recall = hits / max(1, len(found)), hits / len(truth)
    print(f"pairs: {len(truth)} planted, {len(found)} found; precision {precision:.3f} recall {recall:.3f}")
    assert len(truth) == 28
    assert precision >= 0.95 and recall >= 0.95
    for record in records:  # no cluster joins two originals
        assert len({origin[p] for p in record["paths"]}) == 1
        assert record["representative"] in record["paths"]
        assert record["tier"] in ("identical", "perceptual")
        assert 0 < record["score"] <= 1
    assert "identical" in {r["tier"] for r in records}
    same = [r for r in records if any(p.endswith("_same.JPEG") for p in r["paths"])]
    assert same and all(r["tier"] == "identical" and r["score"] == 1.0 for r in same)


def test_rotated_and_mirrored_copies_need_rotations(tmp_path):
    paths, origin = plant(tmp_path / "images", 12, identical=0)
    upright = cluster_pairs(find_duplicates(collect_facts(paths, rotations=False)))
    turned = cluster_pairs(find_duplicates(collect_facts(paths, rotations=True)))
    rotated = [p for p in paths if p.endswith(("_rot90.jpg", "_mirror.jpg"))]
    assert rotated
    for path in rotated:
        pair = tuple(sorted((path, origin[path])))
        assert pair in turned and pair not in upright


def test_representative_is_largest_then_shortest_path(tmp_path):
    paths, origin = plant(tmp_path / "images", 1, identical=0)  # 000 gets a copy at 60 %
    facts = collect_facts(paths)
    (record,) = find_duplicates(facts)
    assert record["representative"] == origin[paths[1]] == paths[0]


def test_near_tier_on_constructed_vectors():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 64)).astype(np.float32)
    near = base[:10] + 0.05 * rng.normal(size=(10, 64)).astype(np.float32)  # cosine ~0.999
    vectors = np.concatenate([base, near])
    facts = [ImageFacts(f"{i}.jpg", hash=str(i), size=(10, 10), phashes=[i]) for i in range(60)]
    records = find_duplicates(facts, vectors, tiers=("near",))
    assert {tuple(r["paths"]) for r in records} == {(f"{i}.jpg", f"{50 + i}.jpg") for i in range(10)}
    assert all(r["tier"] == "near" and r["score"] >= 0.95 for r in records)
    assert {(i, j) for i, j, _ in near_pairs(vectors)} == {(i, 50 + i) for i in range(10)}


def test_failed_images_take_no_part():
    facts = [
        ImageFacts("a.jpg", "h", (4, 4), [0]),
        ImageFacts("b.jpg", error="not an image"),
        ImageFacts("c.jpg", "h", (4, 4), [0]),
    ]
    vectors = np.ones((3, 4), np.float32)
    (record,) = find_duplicates(facts, vectors)
    assert record["paths"] == ["a.jpg", "c.jpg"] and record["tier"] == "identical"


def test_default_phash_distance_is_documented():
    import iconograph.auditing.duplicates as module

    assert str(PHASH_DISTANCE) in module.__doc__ or "PHASH_DISTANCE" in module.__doc__


@pytest.mark.parametrize("block", [1, 7, 256, 5000])
def test_blocked_self_join_matches_full_similarity(block):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    k = 8
    indices, sims = knn_self_join(x, k, block=block)
    n = x / np.linalg.norm(x, axis=1, keepdims=True)
    full = n @ n.T
    np.fill_diagonal(full, -np.inf)
    expected = np.argsort(-full, axis=1, kind="stable")[:, :k]
    assert np.array_equal(indices, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(full, expected, axis=1), rtol=1e-5, atol=1e-6)


def test_self_join_caps_k():
    indices, sims = knn_self_join(np.eye(3, dtype=np.float32), 10)
    assert indices.shape == (3, 2)
    assert knn_self_join(np.ones((1, 3), np.float32), 5)[0].shape == (1, 0)
