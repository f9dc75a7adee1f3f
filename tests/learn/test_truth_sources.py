"""Where train's labels come from: SOURCE's own labels by default, one truth row per image, disjoint splits."""

from __future__ import annotations

import csv
import os

from iconograph.reading.sources import path_key
from tests.conftest import run_cli
from tests.learn.conftest import cifar_rows, write_truth


def image_folder(root, per_class: int = 12):
    """An ImageFolder tree of CIFAR images (symlinks), label = folder name."""
    for path, label in cifar_rows(per_class=per_class):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / path.name).symlink_to(path)
    return root


def split_rows(model_dir):
    with (model_dir / "splits.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def assert_disjoint(rows):
    keys = [path_key(row["path"]) for row in rows]
    assert len(keys) == len(set(keys))  # no image in two splits (or twice in one)


def train(*args, tiny_timm, store):
    return run_cli(
        "train", *args, "--head", "knn", "--backbone", tiny_timm, "--store", store, "--workers", "0", "--val", "0.25",
        "--test", "0.25",
    )  # fmt: skip


def test_train_without_truth_takes_labels_from_an_image_folder(tiny_timm, shared_store, tmp_path):
    photos = image_folder(tmp_path / "photos")
    result = train(photos, "--out", tmp_path / "model", tiny_timm=tiny_timm, store=shared_store)
    assert result.returncode == 0, result.stderr
    rows = split_rows(tmp_path / "model")
    assert len(rows) == 48 and {row["split"] for row in rows} == {"train", "val", "test"}
    assert all(row["labels"] == os.path.basename(os.path.dirname(row["path"])) for row in rows)
    assert_disjoint(rows)


def test_an_image_given_twice_in_source_lands_in_one_split(tiny_timm, shared_store, tmp_path):
    rows = cifar_rows(per_class=12)
    truth = write_truth(tmp_path / "truth.csv", rows)
    again = [str(path.parent / ".." / path.parent.name / path.name) for path, _ in rows[:10]]  # other spellings
    result = train(
        truth, *again, "--truth", truth, "--out", tmp_path / "model", tiny_timm=tiny_timm, store=shared_store
    )
    assert result.returncode == 0, result.stderr
    split = split_rows(tmp_path / "model")
    assert len(split) == 48
    assert_disjoint(split)


def test_train_refuses_truth_that_lists_an_image_twice(tiny_timm, tmp_path):
    rows = cifar_rows(per_class=12)
    first = rows[0][0]
    other_spelling = first.parent / ".." / first.parent.name / first.name
    truth = write_truth(tmp_path / "truth.csv", [*rows, (other_spelling, "frog")])
    result = run_cli("train", truth, "--truth", truth, "--backbone", tiny_timm, "--out", tmp_path / "m")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {truth}: lines 2 and 50 name the same image ({other_spelling}); list each image once"
    ]


def test_train_on_a_source_without_labels_asks_for_truth(tiny_timm, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path, _ in cifar_rows(per_class=2):
        (flat / f"{path.parent.name}-{path.name}").symlink_to(path)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p, _ in cifar_rows(per_class=2)) + "\n")
    for source in (flat, listing):
        result = run_cli("train", source, "--head", "knn", "--backbone", tiny_timm, "--out", tmp_path / "m")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(source) in lines[0] and lines[0].endswith("give the labels with --truth")
