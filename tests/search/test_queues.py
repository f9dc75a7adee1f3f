"""Review queues, queue decisions in the review log, and learning from the reviews (library,
command line and service)."""

from __future__ import annotations

import csv
import json
import shutil
import time

import numpy as np
import pytest

import iconograph as ig
from iconograph.errors import DataError
from iconograph.learning.heads import make_head
from iconograph.search import ReviewError, SearchCollection
from iconograph.search.active import last_learned, learn, learned_scores
from iconograph.search.queues import decide, margin, review_queue
from tests.conftest import run_cli
from tests.search.test_service import client


def truth_of(path: str) -> str:
    return path.split("/")[-2]  # photos/<class>/<file>


def test_uncertain_queue_orders_by_zero_shot_margin(indexed):
    collection, _ = indexed
    queue = review_queue(collection, "uncertain")
    assert len(queue) == 12 and all(r["finding"]["by"] == "zero-shot" for r in queue)
    expected = sorted(
        (margin([lv["score"] for lv in r["labels"]]), r["path"]) for r in (v.to_record() for v in collection.items())
    )
    assert [r["path"] for r in queue] == [p for _, p in expected]


def test_decisions_go_to_the_review_log_and_export(indexed, tmp_path):
    collection, _ = indexed
    paths = [v.path for v in collection.items()]
    decide(collection, paths[0], "relabel", label=truth_of(paths[0]))
    decide(collection, paths[1], "keep", label=truth_of(paths[1]))
    decide(collection, paths[2], "exclude")
    decide(collection, paths[3], "duplicate", duplicate_of=paths[4])
    with pytest.raises(ReviewError):
        decide(collection, paths[5], "relabel")
    with pytest.raises(ReviewError):
        decide(collection, paths[5], "duplicate", duplicate_of=paths[5])
    views = {v.path: v for v in collection.items()}
    assert views[paths[0]].confirmed_labels() == [truth_of(paths[0])]
    assert views[paths[0]].effective_labels() == [truth_of(paths[0])]  # the others rejected
    assert views[paths[2]].excluded and views[paths[3]].duplicate_of == paths[4]
    assert views[paths[2]].effective_labels() == [lv.label for lv in views[paths[2]].labels]  # no pseudo-label
    assert len(review_queue(collection, "uncertain")) == 8
    out = tmp_path / "reviews.csv"
    result = run_cli("export", "--collection", "demo", "--store", collection.store.root, "--reviews", "--out", out)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert {r["path"]: r["labels"] for r in rows} == {p: truth_of(p) for p in paths[:2]}
    predictions = tmp_path / "predictions.jsonl"
    result = run_cli(
        "export", "--collection", "demo", "--store", collection.store.root, "--predictions", "--out", predictions
    )
    assert result.returncode == 0, result.stderr
    exported = [json.loads(line)["path"] for line in predictions.read_text().splitlines()]
    assert sorted(exported) == sorted(p for p in paths if p != paths[2])  # excluded out, the duplicate kept


def test_learn_rescored_queue_matches_the_head(indexed):
    collection, _ = indexed
    with pytest.raises(DataError, match="two labels"):
        learn(collection)
    views = collection.items()
    reviewed = [v.path for v in views if truth_of(v.path) == "cat"][:3] + [
        v.path for v in views if truth_of(v.path) == "dog"
    ][:3]
    for path in reviewed:
        decide(collection, path, "relabel", label=truth_of(path))
    result = learn(collection)
    assert result.reviews == 6 and result.classes == ["cat", "dog"] and result.folds == 3
    assert 0.0 <= result.accuracy <= 1.0 and result.scored == 6
    assert last_learned(collection)["accuracy"] == result.accuracy
    # the queue: the unreviewed images by the margin of the same head fitted on the same vectors
    stored = collection.vectors.vectors_for([v.path for v in views])
    head = make_head("logistic", C=1.0).fit(
        np.stack([stored[p] for p in reviewed]), np.array([truth_of(p) for p in reviewed])
    )
    rest = [v.path for v in views if v.path not in reviewed]
    probs = head.predict_proba(np.stack([stored[p] for p in rest]))
    expected = sorted(zip(np.round(np.abs(probs[:, 0] - probs[:, 1]), 6), rest))
    queue = review_queue(collection, "uncertain")
    assert [r["finding"]["by"] for r in queue] == ["learned head"] * 6
    assert [r["path"] for r in queue] == [p for _, p in expected]
    np.testing.assert_allclose([r["finding"]["margin"] for r in queue], [m for m, _ in expected], atol=1e-5)
    assert set(learned_scores(collection)) == set(rest)
    cli = run_cli("learn", "demo", "--store", collection.store.root, check=True)
    assert "learned a logistic head on 6 reviews (2 classes): cross-validated accuracy" in cli.stderr
    assert run_cli("learn", "nope", "--store", collection.store.root).returncode == 2


@pytest.fixture
def audited(images, tiny_clip, tmp_path):
    """The 'demo' collection with one byte-identical copy, audited with a truth that has one flipped label."""
    from iconograph import Embedder

    first = sorted((images / "cat").iterdir())[0]
    shutil.copyfile(first, images / "cat" / "zz_copy.jpg")
    store = tmp_path / "store"
    collection = SearchCollection("demo", store)
    collection.index(images, Embedder(str(tiny_clip), store=str(store), workers=0, progress=False))
    truth = tmp_path / "truth.csv"
    files = sorted(images.glob("*/*.jpg"))
    with truth.open("w") as handle:
        handle.write("path,labels\n")
        for i, path in enumerate(files):
            handle.write(f"{path},{'dog' if i == 0 else path.parent.name}\n")
    result = ig.audit(collection="demo", store=store, truth=truth, tiers="identical")
    return collection, result


def test_finding_queues_follow_the_audit(audited):
    collection, result = audited
    (cluster,) = result.duplicates
    duplicates = review_queue(collection, "duplicates")
    assert [r["path"] for r in duplicates] == [p for p in cluster["paths"] if p != cluster["representative"]]
    assert duplicates[0]["finding"]["duplicate_of"] == cluster["representative"]
    assert [r["path"] for r in review_queue(collection, "suspect")] == [r["path"] for r in result.label_issues]
    assert [r["path"] for r in review_queue(collection, "outliers")] == [r["path"] for r in result.outliers]
    decide(collection, duplicates[0]["path"], "duplicate", duplicate_of=cluster["representative"])
    assert review_queue(collection, "duplicates") == []


def test_service_queues_decisions_and_background_learning(server):
    with client(server) as http:
        queue = http.get("/api/collections/demo/queues/uncertain").json()
        assert queue["total"] == 12 and queue["items"][0]["finding"]["by"] == "zero-shot"
        assert http.get("/api/collections/demo/queues/nothing").status_code == 422
        answer = http.post("/api/collections/demo/learn")
        assert answer.status_code == 202
        while (status := http.get("/api/collections/demo/learn").json())["running"]:
            time.sleep(0.1)
        assert "two labels" in status["error"] and status["last"] is None
        for item in queue["items"][:6]:
            body = {"path": item["path"], "decision": "relabel", "label": truth_of(item["path"])}
            stored = http.post("/api/collections/demo/decisions", json=body)
            assert stored.status_code == 201, stored.text
            assert stored.json()[-1]["action"] in ("accept", "add")
        bad = http.post(
            "/api/collections/demo/decisions", json={"path": queue["items"][6]["path"], "decision": "relabel"}
        )
        assert bad.status_code == 422
        http.post("/api/collections/demo/learn")
        while (status := http.get("/api/collections/demo/learn").json())["running"]:
            time.sleep(0.1)
        assert status["error"] is None and status["last"]["reviews"] == 6
        after = http.get("/api/collections/demo/queues/uncertain").json()
        assert after["total"] == 6 and after["items"][0]["finding"]["by"] == "learned head"
