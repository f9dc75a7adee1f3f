"""Soft voting: the (weighted) mean of member heads' probabilities.

Written here rather than with scikit-learn's ``VotingClassifier`` because that one rejects
multi-label targets and refits its members itself, so members could not choose their
hyper-parameters on the validation split; for single-label it computes the same average
(``tests/learn/test_heads_sklearn.py`` checks the parity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iconograph.learning.heads.base import Head

DEFAULT_MEMBERS = ("logistic", "svm", "knn", "mlp")


def member_spec(entry) -> tuple[str, dict]:
    """A member is a head kind (``"knn"``) or a kind with parameters (``("knn", {"n_neighbors": 1})``)."""
    if isinstance(entry, str):
        return entry, {}
    kind, params = entry
    return kind, dict(params)


class VotingHead(Head):
    kind = "voting"

    def __init__(
        self,
        *,
        members: tuple = DEFAULT_MEMBERS,
        weights: tuple[float, ...] | None = None,
        multi_label: bool | None = None,
        normalize: bool = True,
        max_labels: int | None = None,
    ):
        super().__init__(multi_label=multi_label, normalize=normalize, max_labels=max_labels)
        self.members = members
        self.weights = weights

    def _fit(self, X, Y, val) -> None:
        from iconograph.learning.heads import make_head

        # Members see the features already normalised, so they must not normalise again. They are
        # fitted on class indices (the columns of Y), so their columns are this head's classes_.
        self.heads_ = []
        for entry in self.members:
            kind, params = member_spec(entry)
            self.heads_.append(make_head(kind, **{**params, "multi_label": self.multi_label_, "normalize": False}))
        target = Y if self.multi_label_ else Y.argmax(axis=1)
        eval_set = None
        if val is not None:
            eval_set = (val[0], val[1] if self.multi_label_ else val[1].argmax(axis=1))
        for head in self.heads_:
            head.fit(X, target, eval_set=eval_set)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        weights = np.ones(len(self.heads_)) if self.weights is None else np.asarray(self.weights, np.float64)
        stacked = np.stack([head._proba(X) for head in self.heads_])
        return np.tensordot(weights / weights.sum(), stacked, axes=1)

    def _save_weights(self, directory: Path) -> None:
        for i, head in enumerate(self.heads_):
            head.save(directory / "members" / f"{i}-{head.kind}")

    def _load_weights(self, directory: Path, fitted: dict) -> None:
        from iconograph.learning.heads import load_head

        kinds = [member_spec(entry)[0] for entry in self.members]
        self.heads_ = [load_head(directory / "members" / f"{i}-{kind}") for i, kind in enumerate(kinds)]

    def _fitted_description(self) -> dict:
        return {"members_": [h._fitted_description() for h in self.heads_]}
