"""train -> predict -> evaluate from the command line, offline, with the model folder moved."""

from __future__ import annotations

import json
import shutil

import numpy as np

from iconograph.classification.results import read_predictions
from iconograph.learning.heads import load_head
from tests.conftest import CIFAR_TEST, run_cli
from tests.learn.conftest import CLASSES, cifar_rows, write_truth


def invoke(*args):
    """The command in this process (for the quick checks; the round trips use fresh processes)."""
    from typer.testing import CliRunner

    from iconograph.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_train_predict_evaluate_round_trip_with_a_moved_model(tiny_timm, cifar_truth, tmp_path):
    store = tmp_path / "store"
    model_dir = tmp_path / "model"
    result = run_cli(
        "train",
        cifar_truth,
        "--truth",
        cifar_truth,
        "--head",
        "logistic",
        "--backbone",
        tiny_timm,
        "--out",
        model_dir,
        "--store",
        store,
        "--workers",
        "0",
        "--min-count",
        "50",
        check=True,
    )
    assert "model ->" in result.stderr and ">= 50" in result.stderr  # the --min-count table
    description = json.loads((model_dir / "iconograph-model.json").read_text())
    assert description["labels"] == sorted(CLASSES) and description["task"] == "single-label"
    assert description["backbone"]["name"] == "timm" and description["backbone"]["preprocessing"]["input_size"]
    assert description["splits"] == {"train": 320, "val": 40, "test": 40}
    moved = tmp_path / "elsewhere" / "my-model"
    moved.parent.mkdir()
    shutil.move(model_dir, moved)

    images = [p for p, _ in cifar_rows("test", per_class=10)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    out = tmp_path / "preds.jsonl"
    run_cli("predict", *images, broken, "--model", moved, "--out", out, "--store", store, "--workers", "0", check=True)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in [*images, broken]]
    assert records[-1]["labels"] == [] and records[-1]["error"]
    assert all(len(r["labels"]) == 4 and r["error"] is None for r in records[:-1])

    # the same numbers as the head applied in-process to the cached embeddings
    from iconograph.engine.embed import Embedder
    from iconograph.engine.store import Store

    head = load_head(moved / "head")
    vectors = Embedder(str(tiny_timm), store=Store(store), workers=0).embed_images(images).vectors
    expected = head.predict_proba(vectors)
    got = np.array(
        [[next(ls["score"] for ls in r["labels"] if ls["label"] == c) for c in head.classes_] for r in records[:-1]]
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)

    metrics_file = tmp_path / "metrics.json"
    run_cli("evaluate", out, "--truth", CIFAR_TEST, "--json", metrics_file, "--single-label", check=True)
    metrics = json.loads(metrics_file.read_text())
    assert metrics["counts"]["evaluated"] == 40  # the broken file is not in the truth
    truth = [p.parent.name for p in images]
    top1 = [r["labels"][0]["label"] for r in records[:-1]]
    assert metrics["accuracy"] == np.mean([a == b for a, b in zip(top1, truth)])


def test_finetuned_model_folder_is_self_contained(tiny_timm, tmp_path):
    truth = write_truth(tmp_path / "truth.csv", cifar_rows(per_class=12))
    model_dir = tmp_path / "tuned"
    run_cli(
        "train",
        truth,
        "--head",
        "finetune",
        "--backbone",
        tiny_timm,
        "--out",
        model_dir,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--workers",
        "0",
        "--test",
        "0.25",
        "--val",
        "0.25",
        "--keep-checkpoints",
        check=True,
    )
    assert (model_dir / "checkpoints" / "last.pt").is_file()
    moved = tmp_path / "moved"
    shutil.move(model_dir, moved)
    out = tmp_path / "preds.jsonl"
    images = [p for p, _ in cifar_rows("test", per_class=2)]
    run_cli("predict", *images, "--model", moved, "--out", out, "--top-k", "2", "--workers", "0", check=True)
    predictions = read_predictions(out)
    assert len(predictions) == 8 and all(len(p.labels) == 2 for p in predictions)
    test_truth = moved / "splits.csv"
    result = run_cli("evaluate", moved / "test_predictions.jsonl", "--truth", test_truth, check=True)
    assert "accuracy" in result.stdout


def test_multi_label_cli_with_a_label_cap(tiny_timm, tmp_path):
    rows = [
        (p, (c, "vehicle") if c in ("automobile", "ship", "airplane") else (c, "animal"))
        for p, c in cifar_rows(per_class=20)
    ]
    truth = write_truth(tmp_path / "truth.csv", rows)
    model_dir = tmp_path / "tags"
    trained = invoke(
        "train",
        truth,
        "--head",
        "knn",
        "--backbone",
        tiny_timm,
        "--out",
        model_dir,
        "--max-labels",
        "2",
        "--workers",
        "0",
    )
    assert trained.exit_code == 0, trained.stderr
    description = json.loads((model_dir / "iconograph-model.json").read_text())
    assert description["task"] == "multi-label" and description["max_labels"] == 2
    assert set(description["thresholds"]) == {*CLASSES, "vehicle", "animal"}
    assert (model_dir / "thresholds.csv").read_text().startswith("label,threshold\n")
    out = tmp_path / "tags.jsonl"
    assert invoke("predict", truth, "--model", model_dir, "--out", out, "--workers", "0").exit_code == 0
    assert max(len(p.labels) for p in read_predictions(out)) <= 2


def test_user_errors_are_one_line(tiny_timm, cifar_truth, tmp_path):
    bad_head = invoke("train", cifar_truth, "--head", "forest", "--backbone", tiny_timm, "--out", tmp_path / "m")
    assert bad_head.exit_code == 2 and "--head must be one of" in bad_head.stderr
    not_a_model = invoke("predict", cifar_truth, "--model", tmp_path)
    assert not_a_model.exit_code == 2 and "not a trained model folder" in not_a_model.stderr
    no_labels = write_truth(tmp_path / "other.csv", [(tmp_path / "x.jpg", "a")])
    unmatched = invoke("train", cifar_truth, "--truth", no_labels, "--backbone", tiny_timm, "--out", tmp_path / "m")
    assert unmatched.exit_code == 2 and "no image in SOURCE has a label" in unmatched.stderr
    for result in (bad_head, not_a_model, unmatched):
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_changed_backbone_is_refused(tiny_timm, tmp_path):
    backbone = tmp_path / "backbone"
    shutil.copytree(tiny_timm, backbone)
    truth = write_truth(tmp_path / "truth.csv", cifar_rows(per_class=10))
    assert (
        invoke(
            "train", truth, "--backbone", backbone, "--out", tmp_path / "m", "--head", "knn", "--workers", "0"
        ).exit_code
        == 0
    )
    config = json.loads((backbone / "config.json").read_text())
    config["pretrained_cfg"]["mean"] = [0.4, 0.4, 0.4]
    (backbone / "config.json").write_text(json.dumps(config))
    result = invoke("predict", truth, "--model", tmp_path / "m")
    assert result.exit_code == 2 and "the weights changed" in result.stderr
