"""Active learning, simulated: does reviewing "most uncertain first" teach the head faster than
reviewing in random order?

A simulated reviewer answers from the truth labels of CIFAR-10 (``../shared/data/cifar10``):
``--pool`` training images (equal per class) are the unreviewed collection, ``--test`` test
images measure the head. Both orders start from the same ``--seed-reviews`` random reviews;
then, ``--batch`` reviews at a time, the head (``make_head("logistic")``, C=1, as
``iconograph learn`` fits it) is refitted on the reviews so far and the next batch is the pool's
smallest-margin images (:func:`iconograph.search.queues.margin`, the uncertainty queue's order)
or a random batch. Accuracy on the test images after 50, 100, 200 and 500 reviews, mean and
standard deviation over ``--repeats`` runs, printed as a table and drawn to ``--plot``.

Features: **raw pixels** (32x32x3, standardised, PCA to 128 dimensions, fitted on the pool).
No trained backbone can be loaded here (no model hub), and a randomly initialised backbone's
features are weaker still and less fair to either order; pixel features are weak too (a linear
head reaches roughly 35-40 % on CIFAR-10), so the figures say how the orders compare, not what
a CLIP feature would reach.

    PYTHONPATH=src python benchmarks/bench_active.py --plot .bench/active.png
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"
CHECKPOINTS = (50, 100, 200, 500)


def load(split: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    classes = sorted(p.name for p in (DATA / split).iterdir() if p.is_dir())
    pixels, labels = [], []
    for c, name in enumerate(classes):
        for path in sorted((DATA / split / name).glob("*.jpg"))[:per_class]:
            with Image.open(path) as image:
                pixels.append(np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1) / 255)
            labels.append(c)
    return np.stack(pixels), np.array(labels)


def features(pool: np.ndarray, test: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(pool)
    pca = PCA(dim, random_state=0).fit(scaler.transform(pool))
    return pca.transform(scaler.transform(pool)).astype(np.float32), pca.transform(scaler.transform(test)).astype(np.float32)


def simulate(order: str, X, y, X_test, y_test, seed: int, seed_reviews: int, batch: int, C: float) -> dict[int, float]:
    from iconograph.learning.heads import make_head
    from iconograph.search.queues import margin

    rng = np.random.default_rng(seed)
    reviewed = list(rng.choice(len(X), seed_reviews, replace=False))
    accuracy = {}
    while len(reviewed) < max(CHECKPOINTS):
        head = make_head("logistic", C=C).fit(X[reviewed], y[reviewed].astype(str))
        if len(reviewed) in CHECKPOINTS:
            accuracy[len(reviewed)] = float((np.asarray(head.predict(X_test)).astype(str) == y_test.astype(str)).mean())
        rest = np.setdiff1d(np.arange(len(X)), reviewed)
        take = min(batch, max(CHECKPOINTS) - len(reviewed))
        if order == "uncertainty":
            probs = np.asarray(head.predict_proba(X[rest]))
            margins = np.array([margin(p) for p in probs])
            chosen = rest[np.argsort(margins, kind="stable")[:take]]
        else:
            chosen = rng.choice(rest, take, replace=False)
        reviewed.extend(int(i) for i in chosen)
    head = make_head("logistic", C=C).fit(X[reviewed], y[reviewed].astype(str))
    accuracy[len(reviewed)] = float((np.asarray(head.predict(X_test)).astype(str) == y_test.astype(str)).mean())
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=500, help="training images per class in the pool")
    parser.add_argument("--test", type=int, default=200, help="test images per class")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed-reviews", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    print("load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs (shared)")
    started = time.perf_counter()
    pool, y = load("train", args.pool)
    test, y_test = load("test", args.test)
    X, X_test = features(pool, test, args.dim)
    print(f"CIFAR-10: pool {len(X)} train images, {len(X_test)} test images; raw-pixel PCA-{args.dim} features "
          f"({time.perf_counter() - started:.1f}s to load)")
    results = {order: [] for order in ("uncertainty", "random")}
    for repeat in range(args.repeats):
        for order in results:
            results[order].append(simulate(order, X, y, X_test, y_test, repeat, args.seed_reviews, args.batch, args.C))
    from iconograph.learning.heads import make_head

    full = make_head("logistic", C=args.C).fit(X, y.astype(str))
    ceiling = float((np.asarray(full.predict(X_test)).astype(str) == y_test.astype(str)).mean())
    print(f"\nhead accuracy on the test images (mean ± sd of {args.repeats} runs; all {len(X)} pool labels: {ceiling:.3f})")
    print(f"{'reviews':>8}  {'uncertainty first':>18}  {'random order':>14}  {'difference':>10}")
    table = {}
    for n in CHECKPOINTS:
        u = np.array([r[n] for r in results["uncertainty"]])
        r = np.array([r[n] for r in results["random"]])
        table[n] = (u.mean(), u.std(), r.mean(), r.std())
        print(f"{n:>8}  {u.mean():>10.3f} ± {u.std():.3f}  {r.mean():>7.3f} ± {r.std():.3f}  {u.mean() - r.mean():>+10.3f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(5, 3.5))
        for label, offset in (("uncertainty first", 0), ("random order", 2)):
            means = [table[n][offset] for n in CHECKPOINTS]
            sds = [table[n][offset + 1] for n in CHECKPOINTS]
            axes.errorbar(CHECKPOINTS, means, yerr=sds, marker="o", capsize=3, label=label)
        axes.axhline(ceiling, color="gray", linestyle=":", label=f"all {len(X)} labels")
        axes.set_xscale("log")
        axes.set_xticks(CHECKPOINTS, [str(n) for n in CHECKPOINTS])
        axes.set_xlabel("reviews")
        axes.set_ylabel("test accuracy")
        axes.set_title("CIFAR-10, raw-pixel PCA features")
        axes.legend()
        figure.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.plot, dpi=120)
        print(f"plot -> {args.plot}")
    print("load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" at the end ({time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()
