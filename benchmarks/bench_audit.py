"""Audit figures: the self-join's memory and time at 10^5 vectors, and suspect labels found on
purposely flipped labels.

1. ``self-join``: ``--n`` random unit vectors of ``--dim`` (default 100 000 x 512), the exact
   blocked join (:func:`iconograph.auditing.neighbours.knn_self_join`, k=10) timed and its peak
   memory measured as the growth of the process's peak RSS (``ru_maxrss``) over the RSS before
   the join (the vectors and the outputs are counted apart). The stated bound: the similarity
   block is at most ``BLOCK_BYTES`` = 64 MiB whatever n is; with torch's and BLAS's workspaces
   the growth measured was 329 MiB at 100 000 x 512 (an n x n float32 matrix would be 37 GiB);
   only the (n, k) outputs (12 bytes per neighbour) grow with n.
   ``--index`` also runs the LanceDB path (scratch table, IVF_HNSW_SQ index, batched queries)
   and prints its recall@10 against the exact join (slow on 2 cores: index ~5 min at 10^5).
2. ``label flips``: a Gaussian mixture (``--classes`` classes, 2 000 points in 64-d), 10 % of
   the labels flipped to another class at random; the audit's out-of-fold head + cleanlab flags
   are compared with the flipped set: precision and recall.

    PYTHONPATH=src python benchmarks/bench_audit.py --n 100000
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def self_join(n: int, dim: int, k: int, index: bool) -> None:
    from iconograph.auditing.neighbours import BLOCK_BYTES, knn_self_join

    rng = np.random.default_rng(0)
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 10_000):  # in chunks: no float64 copy raises the peak before the join
        x[start : start + 10_000] = rng.standard_normal((min(10_000, n - start), dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    knn_self_join(x[:2000], k)  # warm up torch and BLAS so their one-time allocations are not counted
    before, peak_before = rss_mb(), peak_mb()
    started = time.perf_counter()
    indices, sims = knn_self_join(x, k)
    seconds = time.perf_counter() - started
    grown = peak_mb() - before  # the high-water mark over the RSS before the join
    if peak_mb() <= peak_before:
        print(f"(the peak did not rise above the earlier {peak_before:.0f} MiB: the growth is at most that)")
    outputs = (indices.nbytes + sims.nbytes) / 2**20
    print(f"self-join exact: {n} x {dim}, k={k}: {seconds:.1f}s; peak RSS +{grown:.0f} MiB over the {before:.0f} MiB "
          f"before (vectors {x.nbytes / 2**20:.0f} MiB), of which outputs {outputs:.0f} MiB; "
          f"block bound {BLOCK_BYTES / 2**20:.0f} MiB; an n x n matrix would be {n * n * 4 / 2**30:.1f} GiB")
    if index:
        from iconograph.auditing.neighbours import knn_via_index
        from iconograph.engine.store import Store

        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            ann, _ = knn_via_index(x, k, Store(folder))
            seconds = time.perf_counter() - started
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ann, indices)])
        print(f"self-join LanceDB index: {seconds:.1f}s, recall@{k} vs exact {recall:.3f}")


def label_flips(classes: int, n: int = 2000, dim: int = 64, rate: float = 0.1, seed: int = 0) -> None:
    from iconograph.auditing.labels import find_label_issues

    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim)) * 0.6
    y = rng.integers(0, classes, n)
    x = (means[y] + rng.normal(size=(n, dim))).astype(np.float32)
    flipped = rng.choice(n, int(rate * n), replace=False)
    given = y.copy()
    given[flipped] = (y[flipped] + rng.integers(1, classes, len(flipped))) % classes
    names = [f"p{i}" for i in range(n)]
    started = time.perf_counter()
    issues = find_label_issues(names, x, [(f"c{c}",) for c in given])
    seconds = time.perf_counter() - started
    found = {int(r["path"][1:]) for r in issues}
    truth = set(flipped.tolist())
    precision = len(found & truth) / max(1, len(found))
    recall = len(found & truth) / len(truth)
    print(f"label flips: {n} points, {classes} classes, {len(truth)} flipped ({rate:.0%}): {len(found)} flagged, "
          f"precision {precision:.3f}, recall {recall:.3f} ({seconds:.1f}s, 5-fold logistic head + cleanlab)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--index", action="store_true", help="also the LanceDB index path (slow)")
    parser.add_argument("--skip-join", action="store_true")
    args = parser.parse_args()
    print("load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs (shared)")
    label_flips(args.classes)
    if not args.skip_join:
        self_join(args.n, args.dim, args.k, args.index)
    print("load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + " at the end")


if __name__ == "__main__":
    main()
