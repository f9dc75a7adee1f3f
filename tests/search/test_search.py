"""Index and search: parity with brute-force numpy, ANN recall, incremental updates, filters."""

from __future__ import annotations

import shutil

import lancedb
import numpy as np
import pytest

from iconograph import Embedder
from iconograph.classification.decisions import l2_normalize
from iconograph.search import CollectionError, Review, SearchCollection, TaggerConfig, VectorTable
from tests.search.conftest import LABELS, copy_images


def numpy_top_k(matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = l2_normalize(matrix.astype(np.float64)) @ l2_normalize(query.astype(np.float64))
    order = np.argsort(-sims, kind="stable")[:k]
    return order, sims[order]


def test_exact_search_equals_numpy_brute_force(indexed):
    collection, embedder = indexed
    rows = collection.vectors.rows(("path",)).column("path").to_pylist()
    raw = embedder.embed_images(rows)  # the raw vectors, straight from the cache
    assert raw.computed == 0 and raw.cached == len(rows)
    for text in ("a photo of a cat", "dog", "a red truck"):
        query = embedder.embed_texts([text])[0]
        hits, mode = collection.search_text(text, embedder, k=8)
        assert mode == "exact"
        order, sims = numpy_top_k(raw.vectors, query, 8)
        assert [h.path for h in hits] == [rows[i] for i in order]
        np.testing.assert_allclose([h.score for h in hits], sims, atol=1e-5)


def test_image_query_and_more_like_this(indexed, images):
    collection, embedder = indexed
    probe = sorted(images.rglob("*.jpg"))[3]
    hits, _ = collection.search_image(probe, embedder, k=3)
    assert hits[0].path == str(probe) and hits[0].score == pytest.approx(1.0, abs=1e-5)
    similar, _ = collection.similar(str(probe), k=3)
    assert [h.path for h in similar] == [h.path for h in hits]
    with pytest.raises(CollectionError, match="not in collection"):
        collection.similar(str(images / "missing.jpg"))


def test_label_filter_follows_predictions_and_reviews(indexed, tiny_clip):
    collection, embedder = indexed
    rows = collection.vectors.rows(("path", "labels"))
    top1 = dict(zip(rows.column("path").to_pylist(), (labels[0] for labels in rows.column("labels").to_pylist())))
    label = max(LABELS, key=lambda lab: sum(v == lab for v in top1.values()))
    # every row has all three labels (top_k=3): the filter keeps everything until reviews say otherwise
    hits, _ = collection.search_text("cat", embedder, k=50, filters=[f"label={label}"])
    assert len(hits) == 12
    rejected, added_to = hits[0].path, hits[1].path
    collection.review(Review(rejected, label, "reject"))
    collection.review(Review(added_to, "eagle", "add"))
    hits, _ = collection.search_text("cat", embedder, k=50, filters=[f"label={label}"])
    assert rejected not in {h.path for h in hits} and len(hits) == 11
    eagles, _ = collection.search_text("cat", embedder, k=50, filters=["label=eagle"])
    assert [h.path for h in eagles] == [added_to]
    both, _ = collection.search_text("cat", embedder, k=50, filters=["label=eagle", f"label={label}"])
    assert [h.path for h in both] == [added_to]
    quoted, _ = collection.search_text("cat", embedder, k=50, filters=["label=it's"])  # quoting is safe
    assert quoted == []
    with pytest.raises(CollectionError, match="label=NAME"):
        collection.search_text("cat", embedder, filters=["colour=red"])


def test_incremental_index_embeds_only_new_images(tmp_path, tiny_clip):
    root = tmp_path / "photos"
    copy_images(root, ("cat", "dog"), 5)
    store = tmp_path / "store"
    collection = SearchCollection("grow", store)
    first = collection.index(root, Embedder(str(tiny_clip), store=str(store), workers=0), tagger=TaggerConfig(LABELS))
    assert (first.added, first.computed, first.cached, first.tagged) == (10, 10, 0, 10)

    copy_images(root, ("bird", "ship"), 5)  # 10 more images in the same folder
    embedder = Embedder(str(tiny_clip), store=str(store), workers=0)
    second = collection.index(root, embedder)
    assert (second.added, second.unchanged, second.updated) == (10, 10, 0)
    assert (second.computed, second.cached) == (10, 10)  # old images came from the cache
    assert second.tagged == 10  # the remembered tagger tagged the new ones
    assert collection.vectors.count() == 20

    new_image = sorted((root / "ship").glob("*.jpg"))[0]
    hits, _ = collection.search_image(new_image, embedder, k=1)
    assert hits[0].path == str(new_image)

    shutil.copy(root / "bird" / new_image.name, root / "cat" / "0000.jpg")  # content of one file changes
    third = collection.index(root, Embedder(str(tiny_clip), store=str(store), workers=0))
    assert (third.added, third.updated, third.unchanged, third.computed) == (0, 1, 19, 0)
    assert collection.vectors.count() == 20

    (root / "ship" / new_image.name).unlink()
    pruned = collection.index(root, Embedder(str(tiny_clip), store=str(store), workers=0), prune=True)
    assert pruned.removed == 1 and collection.vectors.count() == 19


def test_broken_files_are_reported_not_indexed(tmp_path, tiny_clip):
    root = tmp_path / "photos"
    copy_images(root, ("cat",), 3)
    (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    store = tmp_path / "store"
    report = SearchCollection("b", store).index(root, Embedder(str(tiny_clip), store=str(store), workers=0))
    assert report.added == 3 and [p for p, _ in report.failed] == [str(root / "cat" / "broken.jpg")]
    assert "not a recognised image format" in report.failed[0][1]


def test_ann_index_built_past_threshold_and_extended_incrementally(tmp_path):
    """Random 64-d vectors: the ANN index appears at the threshold, new rows join it via optimize()."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 64)).astype(np.float32)
    table = VectorTable(lancedb.connect(str(tmp_path / "db")), "t", ann_threshold=2500)
    table.upsert([f"p{i}" for i in range(2000)], ["h"] * 2000, vectors[:2000])
    assert table.maintain().mode == "exact"
    table.upsert([f"p{i}" for i in range(2000, 2600)], ["h"] * 600, vectors[2000:2600])
    built = table.maintain()
    assert (built.mode, built.action, built.index_type, built.indexed_rows) == ("ann", "created", "IVF_HNSW_SQ", 2600)

    table.upsert([f"p{i}" for i in range(2600, 3000)], ["h"] * 400, vectors[2600:])
    before = table.state()
    assert (before.indexed_rows, before.unindexed_rows) == (2600, 400)
    probe = vectors[2900]  # an unindexed row is found before the update (flat scan of the rest)
    hits, mode = table.search(probe, 1)
    assert mode == "ann" and hits[0].path == "p2900"
    updated = table.maintain()
    assert updated.action == "updated incrementally"
    assert (updated.indexed_rows, updated.unindexed_rows) == (3000, 0)

    queries = rng.standard_normal((50, 64)).astype(np.float32)
    recall = []
    for q in queries:
        order, _ = numpy_top_k(vectors, q, 10)
        hits, _ = table.search(q, 10)
        recall.append(len({int(h.path[1:]) for h in hits} & set(order.tolist())) / 10)
    assert np.mean(recall) >= 0.95
    exact, mode = table.search(queries[0], 10, mode="exact")
    assert mode == "exact" and [int(h.path[1:]) for h in exact] == numpy_top_k(vectors, queries[0], 10)[0].tolist()
    small = VectorTable(lancedb.connect(str(tmp_path / "db")), "small", ann_threshold=2500)
    small.upsert(["a", "b"], ["h", "h"], vectors[:2])
    with pytest.raises(ValueError, match="no ANN index yet"):
        small.search(queries[0], 1, mode="ann")


def test_unknown_collection_and_bad_names(tmp_path):
    with pytest.raises(CollectionError, match="no collection named"):
        SearchCollection("nothing", tmp_path / "store").require()
    with pytest.raises(CollectionError, match="collection name"):
        SearchCollection("../evil", tmp_path / "store")


def test_searching_with_another_model_is_refused(indexed, tmp_path):
    from iconograph.testing import save_tiny_clip

    collection, _ = indexed
    other = Embedder(str(save_tiny_clip(tmp_path / "other", seed=1)), store=collection.store, workers=0)
    with pytest.raises(CollectionError, match="was indexed with model"):
        collection.search_text("cat", other)


def test_reduced_and_exact_decoding_never_share_a_table(images, tiny_clip, tmp_path):
    from iconograph import Embedder
    from iconograph.search import SearchCollection

    store = tmp_path / "store"
    collection = SearchCollection("modes", store)
    fast = Embedder(str(tiny_clip), store=str(store), workers=0, progress=False)
    exact = Embedder(str(tiny_clip), store=str(store), workers=0, progress=False, exact_decode=True)
    collection.index(images, fast)
    fast_table = collection.meta["table"]
    collection.index(images, exact)
    assert collection.meta["table"] != fast_table  # a new table, not exact rows among reduced ones
    assert collection.meta["image_key"] == exact.model.image_cache_key(True)
