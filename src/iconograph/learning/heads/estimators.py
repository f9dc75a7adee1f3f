"""Heads that are scikit-learn estimators: linear SVM, k-nearest neighbours, a small MLP.

* ``svm``: ``LinearSVC`` with Platt-scaled probabilities (``CalibratedClassifierCV``, sigmoid,
  3 folds, or 2 when a class has 2 training images; a class with 1 is a one-line error),
  one-vs-rest for multi-label; C chosen on validation.
* ``knn``: ``KNeighborsClassifier`` (distance-weighted) on L2-normalised vectors, i.e. cosine
  neighbours; k chosen on validation. Multi-label natively.
* ``mlp``: ``MLPClassifier`` with one hidden layer (ReLU, Adam, early stopping on an internal
  10 % split). Multi-label natively (sigmoid outputs).

Fitted estimators are stored with skops (``skops.io``), which, unlike pickle, loads only the
types it is told to trust; :func:`load_estimator` trusts scikit-learn, NumPy and SciPy types only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iconograph.engine.files import atomic_target
from iconograph.errors import DataError, UserError
from iconograph.learning.heads.base import Head, validation_score

ESTIMATOR_FILE = "estimator.skops"
CALIBRATION_FOLDS = 3
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def save_estimator(estimator, path: Path) -> None:
    import skops.io as sio

    with atomic_target(path) as tmp:
        sio.dump(estimator, tmp)


def load_estimator(path: Path):
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise UserError(f"{path}: refusing to load types outside scikit-learn/NumPy/SciPy: {', '.join(foreign)}")
    return sio.load(path, trusted=untrusted)


def full_proba(estimator, X: np.ndarray, n_classes: int, multi_label: bool) -> np.ndarray:
    """(n, classes) probabilities whatever shape the estimator returns them in."""
    proba = estimator.predict_proba(X)
    if isinstance(proba, list):  # multi-output estimators: one (n, 2) array per class
        return np.stack([p[:, 1] if p.shape[1] > 1 else np.zeros(len(X)) for p in proba], axis=1)
    if multi_label:
        return np.asarray(proba, dtype=np.float64)
    out = np.zeros((len(X), n_classes))
    out[:, np.asarray(estimator.classes_, dtype=int)] = proba  # classes absent from training score 0
    return out


class EstimatorHead(Head):
    """A head wrapping one scikit-learn estimator, with one hyper-parameter chosen on validation."""

    grid_param: str = ""

    def _candidates(self) -> list:
        raise NotImplementedError

    def _make(self, value, Y: np.ndarray):
        """An unfitted estimator for hyper-parameter ``value``; ``Y`` is the (n, classes) 0/1 target."""
        raise NotImplementedError

    def _fit(self, X, Y, val) -> None:
        target = Y if self.multi_label_ else Y.argmax(axis=1)
        fixed = getattr(self, self.grid_param)
        if fixed is not None:
            candidates = [fixed]
        elif val is None:
            candidates = [self._candidates()[len(self._candidates()) // 2]]
        else:
            candidates = self._candidates()
        best = None
        self.validation_scores_ = {}
        for value in candidates:
            self.estimator_ = self._make(value, Y).fit(X, target)
            if val is not None and len(candidates) > 1:
                score = validation_score(val[1], self._proba(val[0]), self.multi_label_)
                self.validation_scores_[str(value)] = score
                if best is None or score > best[0]:
                    best = (score, value, self.estimator_)
        if best is not None:
            _, value, self.estimator_ = best
        else:
            value = candidates[0]
        setattr(self, f"{self.grid_param}_", value)
        if hasattr(self.estimator_, "n_iter_"):
            self.n_iter_ = self.estimator_.n_iter_

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return full_proba(self.estimator_, X, len(self.classes_), self.multi_label_)

    def _save_weights(self, directory: Path) -> None:
        save_estimator(self.estimator_, directory / ESTIMATOR_FILE)

    def _load_weights(self, directory: Path, fitted: dict) -> None:
        self.estimator_ = load_estimator(directory / ESTIMATOR_FILE)
        for key, value in fitted.items():
            setattr(self, key, value)

    def _fitted_description(self) -> dict:
        key = f"{self.grid_param}_"
        return {key: getattr(self, key), "validation_scores_": self.validation_scores_}


class SVMHead(EstimatorHead):
    kind = "svm"
    grid_param = "C"

    def __init__(
        self,
        *,
        C: float | None = None,
        Cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0),
        max_iter: int = 5000,
        random_state: int = 0,
        multi_label: bool | None = None,
        normalize: bool = True,
        max_labels: int | None = None,
    ):
        super().__init__(multi_label=multi_label, normalize=normalize, max_labels=max_labels)
        self.C = C
        self.Cs = Cs
        self.max_iter = max_iter
        self.random_state = random_state

    def _candidates(self) -> list:
        return list(self.Cs)

    def _make(self, value, Y):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.svm import LinearSVC

        svc = LinearSVC(C=value, max_iter=self.max_iter, random_state=self.random_state)
        calibrated = CalibratedClassifierCV(svc, method="sigmoid", cv=self._folds(Y))
        return OneVsRestClassifier(calibrated) if self.multi_label_ else calibrated

    def _folds(self, Y: np.ndarray) -> int:
        """Platt scaling's cross-validation folds: 3, or 2 when a class has 2 training images (each
        fold needs every class; a one-vs-rest problem needs both of its sides)."""
        positives = Y.sum(axis=0)
        counts = np.minimum(positives, len(Y) - positives) if self.multi_label_ else positives
        counts = np.where(counts > 0, counts, np.iinfo(np.int64).max)  # constant one-vs-rest columns: no fit
        rarest = int(np.argmin(counts))
        if counts[rarest] >= 2:
            return int(min(CALIBRATION_FOLDS, counts[rarest]))
        raise DataError(
            f"the svm head calibrates its scores by cross-validation and needs at least 2 training images "
            f"per class; {str(self.classes_[rarest])!r} has 1: drop such classes with --min-count 2, or use --head logistic"
        )


class KNNHead(EstimatorHead):
    kind = "knn"
    grid_param = "n_neighbors"

    def __init__(
        self,
        *,
        n_neighbors: int | None = None,
        ks: tuple[int, ...] = (1, 3, 5, 10, 20, 50),
        multi_label: bool | None = None,
        normalize: bool = True,
        max_labels: int | None = None,
    ):
        super().__init__(multi_label=multi_label, normalize=normalize, max_labels=max_labels)
        self.n_neighbors = n_neighbors
        self.ks = ks

    def _candidates(self) -> list:
        return list(self.ks)

    def _make(self, value, Y):
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=min(int(value), len(Y)), weights="distance")


class MLPHead(EstimatorHead):
    kind = "mlp"
    grid_param = "alpha"

    def __init__(
        self,
        *,
        hidden: int = 512,
        alpha: float | None = 1e-4,
        alphas: tuple[float, ...] = (1e-4, 1e-2),
        max_iter: int = 200,
        random_state: int = 0,
        multi_label: bool | None = None,
        normalize: bool = True,
        max_labels: int | None = None,
    ):
        super().__init__(multi_label=multi_label, normalize=normalize, max_labels=max_labels)
        self.hidden = hidden
        self.alpha = alpha
        self.alphas = alphas
        self.max_iter = max_iter
        self.random_state = random_state

    def _candidates(self) -> list:
        return list(self.alphas)

    def _make(self, value, Y):
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(
            hidden_layer_sizes=(self.hidden,),
            alpha=value,
            max_iter=self.max_iter,
            early_stopping=len(Y) >= 50 and int(Y.sum(axis=0).min()) >= 2,
            n_iter_no_change=10,
            random_state=self.random_state,
        )
