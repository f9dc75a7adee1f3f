"""Seeded, stratified train/val/test splits and label hygiene (dropping rare classes).

* single-label: scikit-learn's ``train_test_split(stratify=...)``, applied twice; images of a
  class too small to appear in every split (fewer than 3 images) all go to train;
* multi-label: iterative stratification (Sechidis et al. 2011) from the
  ``iterative-stratification`` package (``MultilabelStratifiedShuffleSplit``), applied twice.

A collection whose items all carry a ``split`` column (train/val/test) keeps that split.
``--min-count N`` drops classes with fewer than N images (counted over the whole collection)
before splitting; images left without a label are dropped. :func:`min_count_table` shows what
each threshold leaves, as the coin project tabulated by hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iconograph.errors import OptionError
from iconograph.reading.sources import Item

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    train: list[Item]
    val: list[Item]
    test: list[Item]

    def __iter__(self):
        return iter((self.train, self.val, self.test))

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def assignments(self) -> list[tuple[Item, str]]:
        return [(item, name) for name, part in zip(SPLITS, self) for item in part]


@dataclass(frozen=True)
class MinCountRow:
    min_count: int
    classes: int
    train: int
    val: int
    test: int

    @property
    def images(self) -> int:
        return self.train + self.val + self.test


def class_counts(items: Sequence[Item]) -> Counter:
    return Counter(label for item in items for label in set(item.labels or ()))


def drop_rare(items: Sequence[Item], min_count: int) -> list[Item]:
    """Items with the labels of classes that have at least ``min_count`` images; images left bare are dropped."""
    counts = class_counts(items)
    kept = []
    for item in items:
        labels = tuple(label for label in (item.labels or ()) if counts[label] >= min_count)
        if labels:
            kept.append(Item(item.path, labels, item.meta))
    return kept


def is_multi_label_items(items: Sequence[Item]) -> bool:
    return any(len(item.labels or ()) != 1 for item in items)


def split_items(
    items: Sequence[Item],
    *,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    multi_label: bool | None = None,
) -> Split:
    """Stratified train/val/test split of labelled items, reproducible for a given ``seed``."""
    items = [item for item in items if item.labels]
    if items and all(item.meta.get("split") in SPLITS for item in items):
        return Split(*([i for i in items if i.meta["split"] == name] for name in SPLITS))
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise OptionError(f"--val {val} and --test {test} must be fractions that leave images to train on")
    multi_label = is_multi_label_items(items) if multi_label is None else multi_label
    divide = _divide_multi_label if multi_label else _divide_single_label
    rest, test_items = divide(items, test, seed)
    train_items, val_items = divide(rest, val / (1 - test) if test < 1 else 0, seed + 1)
    return Split(train_items, val_items, test_items)


def _divide_single_label(items: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    from sklearn.model_selection import train_test_split

    if fraction <= 0 or not items:
        return list(items), []
    counts = Counter(item.labels[0] for item in items)
    small = [item for item in items if counts[item.labels[0]] < 3]
    large = [item for item in items if counts[item.labels[0]] >= 3]
    if not large:
        return list(items), []
    n_out = int(np.ceil(fraction * len(large)))
    n_classes = len({item.labels[0] for item in large})
    stratify = [item.labels[0] for item in large] if n_out >= n_classes and len(large) - n_out >= n_classes else None
    keep, out = train_test_split(large, test_size=fraction, random_state=seed, stratify=stratify)
    return small + keep, out


def _divide_multi_label(items: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    from iconograph.learning.heads.base import binarize

    if fraction <= 0 or len(items) < 2:
        return list(items), []
    classes = sorted(class_counts(items))
    indicator = binarize([item.labels for item in items], classes)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    keep, out = next(splitter.split(np.zeros(len(items)), indicator))
    return [items[i] for i in sorted(keep)], [items[i] for i in sorted(out)]


def min_count_table(
    items: Sequence[Item],
    min_counts: Sequence[int],
    *,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    multi_label: bool | None = None,
) -> list[MinCountRow]:
    """For each threshold: classes remaining and images per split after dropping rarer classes."""
    rows = []
    for n in min_counts:
        kept = drop_rare([item for item in items if item.labels], n)
        split = split_items(kept, val=val, test=test, seed=seed, multi_label=multi_label)
        rows.append(MinCountRow(n, len(class_counts(kept)), *split.sizes.values()))
    return rows


def format_min_count_table(rows: Sequence[MinCountRow]) -> str:
    """The table as plain text (also what ``iconograph split`` and ``train --min-count`` print)."""
    header = ("min count", "classes", "train", "val", "test", "images")
    lines = [header] + [
        (f">= {r.min_count}", str(r.classes), str(r.train), str(r.val), str(r.test), str(r.images)) for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines]
    return "\n".join([text[0], "  ".join("-" * w for w in widths), *text[1:]])
