"""Linear heads: :class:`LinearHead` (fixed weights, e.g. a fine-tuned classifier layer) and
:class:`LogisticHead` (L2-regularised logistic regression, the linear probe).

:class:`LogisticHead` minimises exactly scikit-learn's ``LogisticRegression`` objective

    mean(log-loss) + ||W||^2 / (2 C n)      (intercept not penalised)

multinomial for single-label (binary with one weight vector when there are two classes, as
scikit-learn does), one independent binary problem per class for multi-label (= one-vs-rest).
It is solved with PyTorch's L-BFGS (strong-Wolfe line search) rather than by calling
scikit-learn because the same code then runs in float32, on a GPU when there is one, and
warm-starts along the C grid that is searched on validation data (CLIP's linear-probe
protocol); scikit-learn's lbfgs runs on the CPU only and restarts every fit. The stopping rule
is scikit-learn's: max |gradient| <= ``tol``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iconograph.heads.base import Head, validation_score

WEIGHTS_FILE = "weights.safetensors"
DEFAULT_CS = tuple(float(c) for c in np.logspace(-2, 4, 7))  # 0.01 ... 10,000, then refined


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


class LinearHead(Head):
    """Scores = softmax / sigmoid of ``X @ coef_.T + intercept_``."""

    kind = "linear"

    def _logits(self, X: np.ndarray) -> np.ndarray:
        return X.astype(np.float64) @ self.coef_.T.astype(np.float64) + self.intercept_.astype(np.float64)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        logits = self._logits(X)
        if self.multi_label_:
            return _sigmoid(logits)
        if self.coef_.shape[0] == 1:  # binary: one vector scores the second class
            p = _sigmoid(logits[:, 0])
            return np.stack([1 - p, p], axis=1)
        return _softmax(logits)

    def decision_function(self, X) -> np.ndarray:
        return self._logits(self._features(X))

    @classmethod
    def from_weights(
        cls, coef: np.ndarray, intercept: np.ndarray, classes, *, multi_label: bool, normalize: bool = False, **kw
    ) -> LinearHead:
        head = cls(multi_label=multi_label, normalize=normalize, **kw)
        head.coef_, head.intercept_ = np.asarray(coef, np.float32), np.asarray(intercept, np.float32)
        head.classes_, head.multi_label_ = list(classes), multi_label
        head.thresholds_ = np.full(len(head.classes_), 0.5)
        return head

    def _save_weights(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        tmp = directory / f".{WEIGHTS_FILE}.tmp"
        save_file({"coef": np.ascontiguousarray(self.coef_), "intercept": np.ascontiguousarray(self.intercept_)}, tmp)
        tmp.replace(directory / WEIGHTS_FILE)

    def _load_weights(self, directory: Path, fitted: dict) -> None:
        from safetensors.numpy import load_file

        weights = load_file(directory / WEIGHTS_FILE)
        self.coef_, self.intercept_ = weights["coef"], weights["intercept"]
        for key, value in fitted.items():
            setattr(self, key, value)


class LogisticHead(LinearHead):
    """Logistic regression on embeddings; ``C=None`` picks C on ``eval_set`` from ``Cs`` (refined)."""

    kind = "logistic"

    def __init__(
        self,
        *,
        C: float | None = None,
        Cs: tuple[float, ...] = DEFAULT_CS,
        tol: float = 1e-4,
        max_iter: int = 1000,
        device: str | None = None,
        multi_label: bool | None = None,
        normalize: bool = True,
        max_labels: int | None = None,
    ):
        super().__init__(multi_label=multi_label, normalize=normalize, max_labels=max_labels)
        self.C = C
        self.Cs = Cs
        self.tol = tol
        self.max_iter = max_iter
        self.device = device

    def _fit(self, X, Y, val) -> None:
        from iconograph.backends.base import resolve_device, set_torch_threads

        set_torch_threads()
        device = resolve_device(self.device)
        problem = _LogisticProblem(X, Y, self.multi_label_, device)
        if self.C is not None or val is None:
            self.C_ = float(self.C if self.C is not None else 1.0)
            weights = problem.solve(self.C_, self.tol, self.max_iter)
            self.validation_scores_ = {}
        else:
            weights = self._search_C(problem, val)
        coef, intercept = (w.detach().cpu().numpy() for w in weights)
        self.coef_, self.intercept_ = coef.astype(np.float32), intercept.astype(np.float32)

    def _search_C(self, problem: _LogisticProblem, val) -> tuple:
        """Warm-started sweep over ``Cs`` (weak to strong fits), then the two half-decade neighbours of the best."""
        X_val, Y_val = val
        scores: dict[float, float] = {}
        solutions: dict[float, tuple] = {}
        warm = None

        def try_C(C: float) -> None:
            nonlocal warm
            warm = problem.solve(C, self.tol, self.max_iter, warm)
            self.coef_, self.intercept_ = (w.detach().cpu().numpy() for w in warm)
            scores[C] = validation_score(Y_val, self._proba(X_val), self.multi_label_)
            solutions[C] = tuple(w.clone() for w in warm)

        for C in sorted(self.Cs):
            try_C(float(C))
        best = max(scores, key=lambda c: (scores[c], -c))
        for C in (best / np.sqrt(10), best * np.sqrt(10)):
            warm = solutions[best]
            try_C(float(C))
        self.C_ = float(max(scores, key=lambda c: (scores[c], -c)))
        self.validation_scores_ = {f"{c:.6g}": s for c, s in sorted(scores.items())}
        return solutions[self.C_]

    def _fitted_description(self) -> dict:
        return {"C_": self.C_, "validation_scores_": self.validation_scores_}


class _LogisticProblem:
    """The data of one logistic regression on a device, solvable for any C."""

    def __init__(self, X: np.ndarray, Y: np.ndarray, multi_label: bool, device: str):
        import torch

        self.X = torch.as_tensor(X, dtype=torch.float32, device=device)
        self.multi_label = multi_label
        self.binary = not multi_label and Y.shape[1] == 2
        if multi_label:
            self.target = torch.as_tensor(Y, dtype=torch.float32, device=device)
            self.outputs = Y.shape[1]
        elif self.binary:
            self.target = torch.as_tensor(Y[:, 1], dtype=torch.float32, device=device)[:, None]
            self.outputs = 1
        else:
            self.target = torch.as_tensor(Y.argmax(axis=1), dtype=torch.long, device=device)
            self.outputs = Y.shape[1]

    def loss(self, weight, bias, C: float):
        import torch.nn.functional as F

        logits = self.X @ weight.T + bias
        n = self.X.shape[0]
        if self.multi_label or self.binary:
            # sum over classes of each binary problem's mean log-loss: separable, so = one-vs-rest
            data = F.binary_cross_entropy_with_logits(logits, self.target, reduction="sum") / n
        else:
            data = F.cross_entropy(logits, self.target)
        return data + (weight * weight).sum() / (2 * C * n)

    def solve(self, C: float, tol: float, max_iter: int, start: tuple | None = None) -> tuple:
        import torch

        d = self.X.shape[1]
        if start is None:
            weight = torch.zeros(self.outputs, d, dtype=torch.float32, device=self.X.device)
            bias = torch.zeros(self.outputs, dtype=torch.float32, device=self.X.device)
        else:
            weight, bias = (w.detach().clone() for w in start)
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1,
            max_iter=max_iter,
            max_eval=int(max_iter * 1.25),
            tolerance_grad=tol,
            tolerance_change=1e-12,
            history_size=10,
            line_search_fn="strong_wolfe",
        )

        def closure():
            optimizer.zero_grad()
            loss = self.loss(weight, bias, C)
            loss.backward()
            return loss

        optimizer.step(closure)
        return weight.detach(), bias.detach()
