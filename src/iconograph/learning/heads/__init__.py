"""Heads on cached embeddings: scikit-learn classifiers (``fit`` / ``predict`` / ``predict_proba`` / ``score``).

>>> head = make_head("logistic").fit(train_vectors, train_labels, eval_set=(val_vectors, val_labels))
>>> head.calibrate(val_vectors, val_labels)   # multi-label: per-class F1-optimal thresholds
>>> head.predict(test_vectors)                # array(["cat", "dog", ...]); 0/1 matrix if multi-label
>>> head.decide(test_vectors)                 # [(LabelScore("cat", 0.93), ...), ...]
>>> head.save("head/"); load_head("head/")
"""

from __future__ import annotations

import json
from pathlib import Path

from iconograph.errors import OptionError
from iconograph.learning.heads.base import HEAD_FILE, Head, binarize, label_sets
from iconograph.learning.heads.estimators import KNNHead, MLPHead, SVMHead
from iconograph.learning.heads.linear import LinearHead, LogisticHead
from iconograph.learning.heads.voting import VotingHead

HEADS: dict[str, type[Head]] = {
    cls.kind: cls for cls in (LogisticHead, SVMHead, KNNHead, MLPHead, VotingHead, LinearHead)
}


def make_head(kind: str, **params) -> Head:
    if kind not in HEADS:
        raise OptionError(f"unknown head '{kind}'; choose from {', '.join(HEADS)}")
    return HEADS[kind](**params)


def load_head(directory: str | Path) -> Head:
    directory = Path(directory)
    kind = json.loads((directory / HEAD_FILE).read_text())["kind"]
    return HEADS[kind].load(directory)


__all__ = [
    "HEADS",
    "Head",
    "KNNHead",
    "LinearHead",
    "LogisticHead",
    "MLPHead",
    "SVMHead",
    "VotingHead",
    "binarize",
    "label_sets",
    "load_head",
    "make_head",
]
