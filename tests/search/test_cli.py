"""The commands as a user runs them: index, search, export, and the review loop back into evaluate."""

from __future__ import annotations

import json

from iconograph.evaluation.metrics import read_truth
from iconograph.search import Review, SearchCollection
from tests.conftest import run_cli


def test_index_search_review_export_evaluate(images, tiny_clip, tmp_path):
    store = tmp_path / "store"
    common = ["--store", store, "--collection", "coins"]
    indexed = run_cli(
        "index",
        images,
        "--model",
        tiny_clip,
        "--labels",
        "cat,dog,bird",
        "--top-k",
        "2",
        *common,
        "--json",
        tmp_path / "index.json",
        check=True,
    )
    assert "12 added" in indexed.stderr and "12 embeddings computed, 0 from cache" in indexed.stderr
    assert "exact search (flat scan of 12 rows)" in indexed.stderr
    assert json.loads((tmp_path / "index.json").read_text())["state"]["mode"] == "exact"

    again = run_cli("index", images, *common, check=True)  # the collection remembers its model and tagger
    assert "0 added" in again.stderr and "0 embeddings computed, 12 from cache" in again.stderr

    out = tmp_path / "hits.jsonl"
    found = run_cli("search", "a photo of a cat", "-k", "5", "--out", out, *common, check=True)
    hits = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0]["score"] >= hits[-1]["score"] and "exact search" in found.stderr
    like = run_cli("search", "--like", hits[0]["path"], "-k", "1", *common, check=True)
    assert json.loads(like.stdout)["path"] == hits[0]["path"]
    by_image = run_cli("search", "--image", hits[1]["path"], "-k", "1", *common, check=True)
    assert json.loads(by_image.stdout)["path"] == hits[1]["path"]
    ann = run_cli("index", images, "--rebuild-index", *common, check=True)
    assert "ann search (IVF_HNSW_SQ, 12 indexed rows)" in ann.stderr

    collection = SearchCollection("coins", store)
    first, second = hits[0]["path"], hits[1]["path"]
    predicted = [lab["label"] for lab in hits[0]["labels"]]
    collection.review(Review(first, predicted[0], "accept"))
    collection.review(Review(first, predicted[1], "reject"))
    collection.review(Review(second, "eagle", "add"))

    labels_csv = tmp_path / "labels.csv"
    run_cli("export", "--reviews", "--out", labels_csv, *common, check=True)
    truth = {item.path: item.labels for item in read_truth(labels_csv)}
    assert truth == {first: (predicted[0],), second: ("eagle",)}
    labels_jsonl = tmp_path / "labels.jsonl"
    run_cli("export", "--reviews", "--include-predicted", "--out", labels_jsonl, *common, check=True)
    rows = [json.loads(line) for line in labels_jsonl.read_text().splitlines()]
    assert {r["path"]: r["labels"][0] for r in rows} == {first: predicted[0], second: rows[1]["labels"][0]}

    corrected = tmp_path / "corrected.jsonl"
    run_cli("export", "--predictions", "--out", corrected, *common, check=True)
    records = {r["path"]: r for r in map(json.loads, corrected.read_text().splitlines())}
    assert len(records) == 12
    assert records[first]["labels"] == [{"label": predicted[0], "score": 1.0}]
    assert records[second]["labels"][0] == {"label": "eagle", "score": 1.0}
    run_cli("evaluate", corrected, "--truth", labels_csv, "--json", tmp_path / "metrics.json", check=True)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["counts"]["evaluated"] == 2 and metrics["accuracy"] == 1.0  # review-corrected top labels


def test_user_errors_are_one_line(images, tiny_clip, tmp_path):
    store = ["--store", tmp_path / "store"]
    missing = run_cli("search", "cat", "--collection", "nope", *store)
    assert missing.returncode == 2 and "no collection named 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
    both = run_cli("search", "cat", "--like", "x.jpg", *store)
    assert both.returncode == 2 and "exactly one of" in both.stderr
    bad_filter = run_cli("index", images, "--model", tiny_clip, *store, check=True)
    assert bad_filter.returncode == 0
    result = run_cli("search", "cat", "--filter", "colour=red", *store)
    assert result.returncode == 2 and "label=NAME" in result.stderr
    neither = run_cli("export", "--out", tmp_path / "x.csv", *store)
    assert neither.returncode == 2 and "exactly one of --reviews or --predictions" in neither.stderr
