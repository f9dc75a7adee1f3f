"""Splits and the --min-count table."""

from __future__ import annotations

from collections import Counter

import pytest

from iconograph.learning.splits import drop_rare, format_min_count_table, min_count_table, split_items
from iconograph.reading.sources import Item
from tests.conftest import run_cli
from tests.learn.conftest import write_truth

# A long tail: multiples of 5 so that 60/20/20 stratified splits are exact per class; "h" is too
# small to stratify (2 images) and goes to train.
LONG_TAIL = {"a": 200, "b": 100, "c": 50, "d": 25, "e": 10, "f": 5, "g": 5, "h": 2}
EXPECTED = """\
min count  classes  train  val  test  images
---------  -------  -----  ---  ----  ------
     >= 1        8    239   79    79     397
    >= 10        5    231   77    77     385
    >= 50        3    210   70    70     350
   >= 100        2    180   60    60     300"""


def long_tail_items() -> list[Item]:
    return [Item(f"/img/{label}{i:03d}.jpg", (label,)) for label, n in LONG_TAIL.items() for i in range(n)]


def test_min_count_table_is_exact():
    rows = min_count_table(long_tail_items(), [1, 10, 50, 100], val=0.2, test=0.2, seed=7)
    assert format_min_count_table(rows) == EXPECTED


def test_split_cli_prints_the_table_and_writes_the_split(tmp_path):
    truth = write_truth(tmp_path / "truth.csv", [(item.path, item.labels[0]) for item in long_tail_items()])
    out = tmp_path / "split.csv"
    args = ["--min-count", "1", "--min-count", "10", "--min-count", "50", "--min-count", "100"]
    result = run_cli("split", truth, *args, "--val", "0.2", "--test", "0.2", "--out", out, check=True)
    assert result.stdout.strip() == EXPECTED
    lines = out.read_text().splitlines()
    assert lines[0] == "path,labels,split" and len(lines) == 398
    assert Counter(line.rsplit(",", 1)[1] for line in lines[1:]) == {"train": 239, "val": 79, "test": 79}


def test_single_label_split_is_stratified_and_seeded():
    items = drop_rare(long_tail_items(), 5)
    split = split_items(items, val=0.2, test=0.2, seed=3)
    for part, share in zip(split, (0.6, 0.2, 0.2)):
        counts = Counter(item.labels[0] for item in part)
        assert counts == {label: int(n * share) for label, n in LONG_TAIL.items() if n >= 5}
    again = split_items(items, val=0.2, test=0.2, seed=3)
    other = split_items(items, val=0.2, test=0.2, seed=4)
    assert [i.path for i in again.test] == [i.path for i in split.test]
    assert [i.path for i in other.test] != [i.path for i in split.test]
    assert {i.path for part in split for i in part} == {i.path for i in items}


def test_multi_label_split_is_iteratively_stratified():
    import numpy as np

    rng = np.random.default_rng(0)
    labels = list("abcdef")
    items = [Item(f"/img/{n}.jpg", tuple(sorted(set(rng.choice(labels, size=rng.integers(1, 4)))))) for n in range(300)]
    split = split_items(items, val=0.2, test=0.2, seed=0)
    assert sum(split.sizes.values()) == 300
    total = Counter(label for item in items for label in item.labels)
    for part, share in zip(split, (0.6, 0.2, 0.2)):
        counts = Counter(label for item in part for label in item.labels)
        for label in labels:
            assert counts[label] == pytest.approx(total[label] * share, abs=max(3, 0.1 * total[label]))


def test_drop_rare_removes_labels_then_bare_images():
    items = [Item("1", ("a", "rare")), Item("2", ("rare",)), Item("3", ("a",)), Item("4", ("a",))]
    kept = drop_rare(items, 3)
    assert [(i.path, i.labels) for i in kept] == [("1", ("a",)), ("3", ("a",)), ("4", ("a",))]


def test_a_split_column_is_kept():
    items = [Item(f"{n}", ("a" if n % 2 else "b",), {"split": ("train", "val", "test")[n % 3]}) for n in range(9)]
    split = split_items(items)
    assert [i.path for i in split.val] == ["1", "4", "7"]
