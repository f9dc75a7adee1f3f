"""What a newcomer ran into (issue 14): rare classes with the svm head, --resume, stale files."""

from __future__ import annotations

import numpy as np
import pytest

import iconograph as ig
from iconograph.errors import DataError, OptionError
from tests.learn.conftest import cifar_rows, write_truth
from tests.learn.test_report import fake_predictions


def separable(counts: dict[str, int], dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors, labels = [], []
    for i, (label, n) in enumerate(counts.items()):
        vectors.append(rng.normal(size=(n, dim)) + np.eye(dim)[i] * 4)
        labels += [label] * n
    return np.concatenate(vectors), labels


def test_svm_head_takes_a_class_of_two_images_as_logistic_does():
    X, y = separable({"eagle": 10, "owl": 10, "zeus": 2})
    for kind in ("logistic", "svm"):
        head = ig.make_head(kind).fit(X, y)
        assert head.predict_proba(X).shape == (22, 3)
        assert list(head.classes_) == ["eagle", "owl", "zeus"]


def test_svm_head_multi_label_with_a_rare_label():
    X, _ = separable({"a": 10, "b": 10})
    tags = [("a",)] * 10 + [("b",)] * 10
    tags[0] = ("a", "rare")
    tags[11] = ("b", "rare")
    head = ig.make_head("svm", multi_label=True).fit(X, tags)
    assert head.predict_proba(X).shape == (20, 3)


def test_svm_head_names_a_one_image_class_and_the_min_count_that_drops_it():
    X, y = separable({"eagle": 10, "owl": 10, "zeus": 1})
    with pytest.raises(DataError, match=r"'zeus' has 1: drop such classes with --min-count 2"):
        ig.make_head("svm").fit(X, y)


def test_resume_says_why_it_cannot_continue(tmp_path):
    truth = tmp_path / "truth.csv"  # never read: the check comes first
    with pytest.raises(OptionError, match="nothing to resume"):
        ig.train(truth, head="finetune", out=tmp_path / "new", resume=True)
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "iconograph-model.json").write_text("{}")
    with pytest.raises(OptionError, match="finished model and no checkpoint"):
        ig.train(truth, head="finetune", out=finished, resume=True)
    with pytest.raises(OptionError, match="a logistic head trains in one go"):
        ig.train(truth, head="logistic", out=finished, resume=True)


def test_retraining_replaces_the_whole_model_folder_but_keeps_user_files(tiny_timm, tmp_path):
    truth = write_truth(tmp_path / "truth.csv", cifar_rows(per_class=8))
    out = tmp_path / "model"
    options = {"backbone": str(tiny_timm), "out": out, "workers": 0, "store": tmp_path / "store"}
    ig.train(truth, head="svm", **options)
    assert (out / "head" / "estimator.skops").is_file()
    (out / "notes.txt").write_text("mine")
    ig.train(truth, head="logistic", test=0.0, **options)
    assert not (out / "head" / "estimator.skops").exists()  # the svm's weights did not survive
    assert not (out / "test_predictions.jsonl").exists()  # nor the earlier run's test predictions
    assert (out / "notes.txt").read_text() == "mine"
    assert ig.TrainedModel.load(out).head.kind == "logistic"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]  # no temporary left


def test_a_report_rewritten_leaves_no_plot_of_the_earlier_one(tmp_path):
    from iconograph.evaluation.report import write_full_report

    out = tmp_path / "report.html"
    predictions, truth = fake_predictions(False)
    write_full_report(predictions, truth, out)
    files = tmp_path / "report_files"
    assert (files / "confusion.png").is_file()
    (files / "README.txt").write_text("mine")
    predictions, truth = fake_predictions(True)
    write_full_report(predictions, truth, out)
    assert not (files / "confusion.png").exists()  # multi-label reports have no confusion matrix
    assert (files / "pr_curves.png").is_file() and (files / "README.txt").read_text() == "mine"
