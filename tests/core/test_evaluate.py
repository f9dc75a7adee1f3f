import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

import iconograph as ig
from iconograph.classification.results import LabelScore, Prediction
from tests.conftest import CIFAR_TEST, run_cli
from tests.learn.test_report import shown_numbers


def pred(path, *labels, error=None):
    return Prediction(path, tuple(LabelScore(label, score) for label, score in labels), error)


def test_single_label_metrics_by_hand():
    truth = {"1.jpg": ["a"], "2.jpg": ["a"], "3.jpg": ["b"], "4.jpg": ["c"]}
    predictions = [
        pred("1.jpg", ("a", 0.9), ("b", 0.1)),
        pred("2.jpg", ("b", 0.6), ("a", 0.4)),
        pred("3.jpg", ("b", 0.7), ("c", 0.3)),
        pred("4.jpg", ("a", 0.8), ("b", 0.2)),
    ]
    m = ig.evaluate(predictions, truth)
    assert m["task"] == "single-label"
    assert m["accuracy"] == 0.5 and m["f1_micro"] == 0.5
    assert m["top5_accuracy"] == 0.75  # 4.jpg never lists c
    assert m["f1_macro"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert m["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert m["confusion"]["labels"] == ["a", "b", "c"]
    assert m["confusion"]["matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    # AP: a scores (.9,.4,0,.8) truth (1,1,0,0) -> ranks .9+, .8-, .4+ : (1 + 2/3)/2; b: (0.1,.6,.7,.2) truth (0,0,1,0) -> 1; c: (0,0,.3,0) truth (0,0,0,1) -> 0.25
    assert m["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1 + 0.25) / 3)


def test_multi_label_metrics_and_error_records_count_as_empty():
    truth = {"1.jpg": ["zeus", "eagle"], "2.jpg": ["eagle"], "3.jpg": ["patera"]}
    predictions = [
        pred("1.jpg", ("zeus", 0.9), ("eagle", 0.8)),
        pred("2.jpg", ("eagle", 0.7), ("patera", 0.6)),
        pred("3.jpg", error="cannot decode image: truncated"),
    ]
    m = ig.evaluate(predictions, truth)
    assert m["task"] == "multi-label"
    assert m["accuracy"] == pytest.approx(1 / 3)  # exact set match
    # tp=3 (zeus, eagle, eagle), fp=1 (patera on 2), fn=1 (patera on 3)
    assert m["f1_micro"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["f1_samples"] == pytest.approx((1 + 2 * 1 / 3 + 0) / 3)
    assert m["per_class"]["patera"]["support"] == 1 and m["per_class"]["patera"]["f1"] == 0
    assert m["counts"]["errors"] == 1


def test_cli_evaluate_against_an_image_folder_and_a_csv(tmp_path, tiny_clip):
    folder = tmp_path / "photos"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for source in sorted((CIFAR_TEST / label).glob("*.jpg"))[:6]:
            (folder / label / source.name).write_bytes(source.read_bytes())
    preds = tmp_path / "preds.jsonl"
    run_cli("classify", folder, "--labels", "cat,dog,frog", "--model", tiny_clip, "--out", preds, check=True)
    metrics_path, report = tmp_path / "m.json", tmp_path / "r.html"
    result = run_cli("evaluate", preds, "--truth", folder, "--json", metrics_path, "--report", report, check=True)
    metrics = json.loads(metrics_path.read_text())
    for key in ("accuracy", "top5_accuracy", "f1_micro", "f1_macro", "f1_samples", "mAP", "per_class", "confusion"):
        assert key in metrics
    assert metrics["counts"]["evaluated"] == 12 and metrics["top5_accuracy"] == 1.0
    assert metrics == ig.evaluate(preds, folder)  # the CLI's JSON is the library's numbers
    y_true = [Path(p.path).parent.name for p in ig.read_predictions(preds)]
    y_pred = [p.labels[0].label for p in ig.read_predictions(preds)]
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=["cat"], zero_division=0)
    assert metrics["per_class"]["cat"] == pytest.approx(
        {"precision": precision[0], "recall": recall[0], "f1": f1[0], "support": support[0]}
    )
    assert metrics["accuracy"] == pytest.approx(np.mean(np.array(y_true) == np.array(y_pred)))
    assert "accuracy" in result.stdout
    html = report.read_text()
    assert all(f'id="{section}"' in html for section in ("headline", "per-class", "confusion"))
    shown = shown_numbers(html)  # and the report shows those numbers
    assert shown["headline"]["accuracy"] == f"{metrics['accuracy']:.4f}" and shown["counts"] == metrics["counts"]
    assert {label: row["f1"] for label, row in shown["per_class"].items()} == {
        label: stats["f1"] for label, stats in metrics["per_class"].items()
    }

    truth_csv = tmp_path / "truth.csv"
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name};animal" for p in sorted(folder.rglob("*.jpg"))]
    truth_csv.write_text("path,labels\n" + "\n".join(rows) + "\n")
    run_cli("evaluate", preds, "--truth", truth_csv, "--json", metrics_path, check=True)
    multi = json.loads(metrics_path.read_text())
    assert multi["task"] == "multi-label" and multi["per_class"]["animal"]["support"] == 12
    assert multi["per_class"]["animal"]["recall"] == 0.0  # no prediction says "animal"
    assert multi == ig.evaluate(preds, truth_csv)


def test_evaluate_without_matches_is_a_clear_error(tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"path": "elsewhere.jpg", "labels": [], "error": None}) + "\n")
    truth = tmp_path / "t.csv"
    truth.write_text("path,labels\na.jpg,cat\n")
    result = run_cli("evaluate", preds, "--truth", truth)
    assert result.returncode == 2 and "no prediction matches" in result.stderr


def test_one_class_truth_repeated_predictions_and_unlabelled_single_label_images(tmp_path):
    import pytest

    import iconograph as ig
    from iconograph.classification.results import LabelScore, Prediction
    from iconograph.errors import DataError

    a, b = str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")
    predictions = [Prediction(a, (LabelScore("cat", 0.9),)), Prediction(b, ())]
    one_class = ig.evaluate(predictions, {a: ["cat"], b: ["cat"]})
    assert (one_class["accuracy"], one_class["f1_samples"]) == (0.5, 0.5)  # scikit-learn refused one column
    with pytest.raises(DataError, match="list one image twice"):
        ig.evaluate([*predictions, Prediction(str(tmp_path / "." / "a.jpg"), ())], {a: ["cat"]})
    with pytest.raises(DataError, match="1 evaluated images have no truth label"):
        ig.evaluate(predictions, {a: ["cat"], b: []}, multi_label=False)
