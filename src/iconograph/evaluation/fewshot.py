"""Few-shot probes for :func:`~iconograph.evaluation.compare.compare`: a head from
:mod:`iconograph.learning.heads` fitted on k labelled images per class of the cached image
embeddings, scored on a held-out split, for a curve of k against zero-shot.

The protocol (CLIP's few-shot linear probe, on the user's own folder):

* the labelled images are split once, seeded, into a pool and a held-out test part
  (:func:`iconograph.learning.splits.split_items`: stratified for single-label, iterative
  stratification for multi-label; a truth with a ``split`` column keeps its own test part);
* for each k the training images are drawn from the pool with one seeded permutation:
  single-label, the first k images of each class in that order (so the k = 1 images are among
  the k = 2 images, and so on; a class with fewer than k images in the pool gives all it has);
  multi-label, images in that order are taken while one of their labels has fewer than k;
* the head is fitted on those images only (no validation data: a logistic probe uses C = 1),
  decides the test images as ``predict`` would, and is scored with
  :func:`~iconograph.evaluation.metrics.evaluate`, like every zero-shot row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from iconograph.classification.results import Prediction
from iconograph.errors import OptionError
from iconograph.evaluation.metrics import evaluate
from iconograph.learning.heads import HEADS, make_head
from iconograph.learning.splits import split_items
from iconograph.reading.sources import Item

DEFAULT_SHOTS = (1, 2, 4, 8, 16)


@dataclass
class FewShot:
    """The split the probes of every model share, and zero-shot scored on the same test images.

    ``train`` maps k to the training image paths, ``zero_shot`` maps model to template set to
    :func:`evaluate`'s scalar metrics on ``test`` (the zero-shot rows themselves are scored on
    every image, as ``classify`` then ``evaluate`` give them).
    """

    head: str
    shots: list[int]
    seed: int
    test_size: float
    test: list[str]
    train: dict[int, list[str]]
    zero_shot: dict[str, dict[str, dict]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "head": self.head,
            "shots": self.shots,
            "seed": self.seed,
            "test_size": self.test_size,
            "test_images": len(self.test),
            "train_images": {str(k): len(paths) for k, paths in self.train.items()},
            "train": {str(k): paths for k, paths in self.train.items()},
            "zero_shot_on_test": self.zero_shot,
        }


def check_shots(head: str, shots: Sequence[int], test_size: float) -> list[int]:
    if head not in HEADS:
        raise OptionError(f"unknown head '{head}'; choose from {', '.join(HEADS)}")
    shots = sorted({int(k) for k in shots})
    if not shots or shots[0] < 1:
        raise OptionError("--shots takes whole numbers of images per class, 1 or more")
    if not 0 < test_size < 1:
        raise OptionError(f"--test-size {test_size} must be a fraction between 0 and 1")
    return shots


def few_shot_split(
    items: Sequence[Item], shots: Sequence[int], *, test_size: float = 0.5, seed: int = 0, multi_label: bool
) -> tuple[list[Item], dict[int, list[Item]]]:
    """The held-out test items and, for each k, the training items (see the module docstring)."""
    split = split_items(items, val=0.0, test=test_size, seed=seed, multi_label=multi_label)
    pool, test = [*split.train, *split.val], split.test
    if not test:
        raise OptionError(
            "too few labelled, readable images for a held-out test split; give more, or a larger --test-size"
        )
    order = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    train = {}
    for k in shots:
        counts: dict[str, int] = {}
        chosen = []
        for item in order:
            labels = item.labels[:1] if not multi_label else item.labels
            if any(counts.get(label, 0) < k for label in labels):
                chosen.append(item)
                for label in labels:
                    counts[label] = counts.get(label, 0) + 1
        train[k] = chosen
    return test, train


def probe_rows(
    vectors: dict[str, np.ndarray],
    train: dict[int, list[Item]],
    test: list[Item],
    *,
    head: str,
    multi_label: bool,
    top_k: int | None,
    **head_params,
) -> list[dict]:
    """One row per k: ``head`` fitted on ``train[k]``'s vectors, scored on ``test``'s."""
    test_vectors = np.stack([vectors[item.path] for item in test])
    rows = []
    for k, items in train.items():
        X = np.stack([vectors[item.path] for item in items])
        y = [tuple(item.labels) for item in items] if multi_label else [item.labels[0] for item in items]
        start = time.perf_counter()
        fitted = make_head(head, multi_label=multi_label, **head_params).fit(X, y)
        fit_seconds = time.perf_counter() - start
        decided = fitted.decide(test_vectors, top_k=top_k)
        predictions = [Prediction(item.path, labels) for item, labels in zip(test, decided)]
        metrics = evaluate(predictions, test, multi_label=multi_label)
        rows.append({"shots": k, "train_images": len(items), **metrics, "fit_seconds": fit_seconds})
    return rows
