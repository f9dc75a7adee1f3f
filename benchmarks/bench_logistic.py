"""Logistic-regression head vs scikit-learn's lbfgs LogisticRegression on the same features.

Features: a Gaussian mixture standing in for cached image embeddings: ``--classes`` random class
means in ``--dim`` dimensions, isotropic unit noise, every vector L2-normalised (as the head
normalises CLIP features). Both fit the same float32 matrix with the same C, tol and max_iter;
the script prints accuracy on held-out vectors, agreement of the two models' predictions, fit
times and their ratio (baseline = scikit-learn, measured in the same run).

    PYTHONPATH=src python benchmarks/bench_logistic.py --n 50000 --dim 512 --classes 50
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def gaussian_mixture(n: int, dim: int, classes: int, spread: float, seed: int):
    means = np.random.default_rng(1234).normal(size=(classes, dim)).astype(np.float32) * spread
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = means[y] + rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), y.astype(str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--spread", type=float, default=0.2, help="class-mean scale (sets the difficulty)")
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="fits of each, interleaved; medians are compared")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    from iconograph.learning.heads import LogisticHead

    x, y = gaussian_mixture(args.n, args.dim, args.classes, args.spread, seed=0)
    x_test, y_test = gaussian_mixture(args.test, args.dim, args.classes, args.spread, seed=1)
    print(
        f"{args.n:,} x {args.dim} float32 features, {args.classes} classes, C={args.C}, tol={args.tol}, "
        f"{len(os.sched_getaffinity(0))} CPU cores"
    )

    warnings.filterwarnings("ignore")
    sklearn_times, head_times = [], []
    for _ in range(args.repeats):  # interleaved, so a busy moment of a shared machine hits both
        start = time.perf_counter()
        reference = LogisticRegression(C=args.C, tol=args.tol, max_iter=args.max_iter).fit(x, y)
        sklearn_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        head = LogisticHead(C=args.C, tol=args.tol, max_iter=args.max_iter, normalize=False, device="cpu").fit(x, y)
        head_times.append(time.perf_counter() - start)
    sklearn_seconds, head_seconds = float(np.median(sklearn_times)), float(np.median(head_times))
    sklearn_pred = reference.predict(x_test)
    head_pred = head.predict(x_test)

    sklearn_accuracy = float(np.mean(sklearn_pred == y_test))
    head_accuracy = float(np.mean(head_pred == y_test))
    times = lambda values: ", ".join(f"{v:.2f}" for v in values)  # noqa: E731
    print(
        f"scikit-learn lbfgs : median {sklearn_seconds:6.2f} s ({times(sklearn_times)})   accuracy {sklearn_accuracy:.4f}   ({reference.n_iter_[0]} iterations)"
    )
    print(f"iconograph logistic: median {head_seconds:6.2f} s ({times(head_times)})   accuracy {head_accuracy:.4f}")
    print(f"time ratio (iconograph / scikit-learn, medians): {head_seconds / sklearn_seconds:.2f}")
    print(
        f"accuracy difference: {head_accuracy - sklearn_accuracy:+.4f}; "
        f"predictions agree on {np.mean(head_pred == sklearn_pred):.2%} of test vectors"
    )


if __name__ == "__main__":
    main()
