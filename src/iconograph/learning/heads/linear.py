"""Linear heads: :class:`LinearHead` (fixed weights, e.g. a fine-tuned classifier layer) and
:class:`LogisticHead` (L2-regularised logistic regression, the linear probe).

:class:`LogisticHead` minimises exactly scikit-learn's ``LogisticRegression`` objective

    mean(log-loss) + ||W||^2 / (2 C n)      (intercept not penalised)

multinomial for single-label (binary with one weight vector when there are two classes, as
scikit-learn does), one independent binary problem per class for multi-label (= one-vs-rest).
The optimiser is scikit-learn's: SciPy's L-BFGS-B with the same options (``gtol=tol``,
``maxls=50``, ``ftol=64 eps``), so both take the same path to the same optimum. What differs is
the objective: loss and gradient are computed here in PyTorch, in float32, with the gradient
written out (softmax minus one-hot, then one matrix product) instead of scikit-learn's generic
loss module. That makes each evaluation cheaper on the CPU, runs it on a GPU when there is one,
and lets the C grid searched on validation data (CLIP's linear-probe protocol) warm-start each
fit from the previous one. See ``benchmarks/bench_logistic.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iconograph.classification.decisions import DEFAULT_THRESHOLD, sigmoid, softmax
from iconograph.engine.files import atomic_target
from iconograph.learning.heads.base import Head, validation_score

WEIGHTS_FILE = "weights.safetensors"
SMALL_PROBLEM_FLOPS = 2e8  # per evaluation; below this one thread is faster
DEFAULT_CS = tuple(float(c) for c in np.logspace(-2, 4, 7))  # 0.01 ... 10,000, then refined


class LinearHead(Head):
    """Scores = softmax / sigmoid of ``X @ coef_.T + intercept_``."""

    kind = "linear"

    def _logits(self, X: np.ndarray) -> np.ndarray:
        return X.astype(np.float64) @ self.coef_.T.astype(np.float64) + self.intercept_.astype(np.float64)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        logits = self._logits(X)
        if self.multi_label_:
            return sigmoid(logits)
        if self.coef_.shape[0] == 1:  # binary: one vector scores the second class
            p = sigmoid(logits[:, 0])
            return np.stack([1 - p, p], axis=1)
        return softmax(logits)

    def decision_function(self, X) -> np.ndarray:
        """Logits (n, classes); (n,) for a single-label binary head, as scikit-learn gives them."""
        logits = self._logits(self._features(X))
        return logits[:, 0] if logits.shape[1] == 1 and not self.multi_label_ else logits

    @classmethod
    def from_weights(
        cls, coef: np.ndarray, intercept: np.ndarray, classes, *, multi_label: bool, normalize: bool = False, **kw
    ) -> LinearHead:
        head = cls(multi_label=multi_label, normalize=normalize, **kw)
        head.coef_, head.intercept_ = np.asarray(coef, np.float32), np.asarray(intercept, np.float32)
        head.classes_, head.multi_label_ = np.asarray(classes), multi_label
        head.thresholds_ = np.full(len(head.classes_), DEFAULT_THRESHOLD)
        head.n_features_in_ = head.coef_.shape[1]
        return head

    def _save_weights(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        with atomic_target(directory / WEIGHTS_FILE) as tmp:
            weights = {"coef": np.ascontiguousarray(self.coef_), "intercept": np.ascontiguousarray(self.intercept_)}
            save_file(weights, tmp)

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
            self.n_iter_ = problem.n_iter
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
        iterations: dict[float, int] = {}
        warm = None

        def try_C(C: float) -> None:
            nonlocal warm
            warm = problem.solve(C, self.tol, self.max_iter, warm)
            self.coef_, self.intercept_ = (w.detach().cpu().numpy() for w in warm)
            scores[C] = validation_score(Y_val, self._proba(X_val), self.multi_label_)
            solutions[C] = tuple(w.clone() for w in warm)
            iterations[C] = problem.n_iter

        for C in sorted(self.Cs):
            try_C(float(C))
        best = max(scores, key=lambda c: (scores[c], -c))
        for C in (best / np.sqrt(10), best * np.sqrt(10)):
            warm = solutions[best]
            try_C(float(C))
        self.C_ = float(max(scores, key=lambda c: (scores[c], -c)))
        self.n_iter_ = iterations[self.C_]  # L-BFGS iterations of the chosen C's (warm-started) fit
        self.validation_scores_ = {f"{c:.6g}": s for c, s in sorted(scores.items())}
        return solutions[self.C_]

    def _fitted_description(self) -> dict:
        return {"C_": self.C_, "validation_scores_": self.validation_scores_}


class _LogisticProblem:
    """The data of one logistic regression on a device: loss and gradient for any C."""

    def __init__(self, X: np.ndarray, Y: np.ndarray, multi_label: bool, device: str):
        import torch

        self.X = torch.as_tensor(X, dtype=torch.float32, device=device)
        self.n, self.d = self.X.shape
        self.binary = not multi_label and Y.shape[1] == 2
        self.sigmoid = multi_label or self.binary  # independent binary problems (one per output)
        if self.binary:
            Y = Y[:, 1:]
        self.outputs = Y.shape[1]
        if self.sigmoid:
            self.target = torch.as_tensor(Y, dtype=torch.float32, device=device)
        else:
            self.index = torch.as_tensor(Y.argmax(axis=1), dtype=torch.long, device=device)
            self.rows = torch.arange(self.n, device=device)

    def loss_and_gradient(self, params: np.ndarray, C: float) -> tuple[float, np.ndarray]:
        """scikit-learn's objective ``mean(log-loss) + ||W||^2 / (2 C n)`` and its gradient."""
        import torch

        flat = torch.as_tensor(params, dtype=torch.float32, device=self.X.device)
        weight = flat[: self.outputs * self.d].view(self.outputs, self.d)
        bias = flat[self.outputs * self.d :]
        logits = torch.addmm(bias, self.X, weight.T)
        if self.sigmoid:
            # log(1 + e^z) - y z, summed over the binary problems: separable, so = one-vs-rest
            data_loss = (torch.nn.functional.softplus(logits) - self.target * logits).sum()
            residual = torch.sigmoid(logits) - self.target
        else:  # softmax written out: one exp pass serves both the loss and the gradient
            top = logits.max(dim=1, keepdim=True).values
            residual = torch.exp(logits - top)
            total = residual.sum(dim=1, keepdim=True)
            log_norm = top[:, 0] + torch.log(total[:, 0])
            data_loss = (log_norm - logits[self.rows, self.index]).sum()
            residual /= total
            residual[self.rows, self.index] -= 1.0
        strength = 1.0 / (C * self.n)
        loss = data_loss / self.n + 0.5 * strength * (weight * weight).sum()
        grad_weight = residual.T @ self.X / self.n + strength * weight
        grad_bias = residual.sum(dim=0) / self.n
        gradient = torch.cat([grad_weight.reshape(-1), grad_bias])
        return float(loss), gradient.double().cpu().numpy()

    def solve(self, C: float, tol: float, max_iter: int, start: tuple | None = None) -> tuple:
        import torch

        # Small problems run on one thread: waking a thread pool costs more than their matrix products
        # (and a lot more on a busy machine).
        small = self.X.device.type == "cpu" and 4 * self.n * self.d * self.outputs < SMALL_PROBLEM_FLOPS
        threads = torch.get_num_threads()
        if small:
            torch.set_num_threads(1)
        try:
            return self._solve(C, tol, max_iter, start)
        finally:
            torch.set_num_threads(threads)

    def _solve(self, C: float, tol: float, max_iter: int, start: tuple | None) -> tuple:
        import torch
        from scipy.optimize import minimize

        size = self.outputs * (self.d + 1)
        x0 = np.zeros(size) if start is None else np.concatenate([np.ravel(start[0]), np.ravel(start[1])])
        result = minimize(
            self.loss_and_gradient,
            x0.astype(np.float64),
            args=(C,),
            method="L-BFGS-B",
            jac=True,
            options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps},
        )
        self.n_iter = int(result.nit)
        weight = torch.as_tensor(result.x[: self.outputs * self.d].reshape(self.outputs, self.d), dtype=torch.float32)
        bias = torch.as_tensor(result.x[self.outputs * self.d :], dtype=torch.float32)
        return weight, bias
