"""Nearest neighbours of a set of vectors among themselves, in row blocks (never an n x n matrix).

:func:`knn_self_join` is exact: a batched matrix product of L2-normalised vectors, ``block``
rows at a time, keeping the top ``k`` of each row. Memory is ``block x n`` floats. It is the
path for collections up to :data:`EXACT_LIMIT` images; above that it still works, only slower
(n^2 / 2 dot products).

TODO(issue 12): above ``EXACT_LIMIT`` use the LanceDB vector index (IVF-PQ) as an approximate
self-join instead of the exact product.
"""

from __future__ import annotations

import numpy as np

from iconograph.classification.decisions import l2_normalize

EXACT_LIMIT = 20_000
DEFAULT_BLOCK = 1024


def knn_self_join(vectors: np.ndarray, k: int, *, block: int = DEFAULT_BLOCK, normalize: bool = True):
    """The ``k`` most cosine-similar other rows of each row: ``(indices, similarities)``, each
    ``(n, k)``, best first (a row is never its own neighbour; ties broken by the lower index).
    ``k`` is capped at ``n - 1``."""
    x = np.asarray(vectors, dtype=np.float32)
    if normalize:
        x = l2_normalize(x)
    n = len(x)
    k = max(0, min(k, n - 1))
    indices = np.zeros((n, k), dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return indices, sims
    for start in range(0, n, block):
        stop = min(n, start + block)
        s = x[start:stop] @ x.T  # (block, n)
        s[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not its own neighbour
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(s, part, axis=1)
        order = np.lexsort((part, -top), axis=1)  # by similarity, then index
        indices[start:stop] = np.take_along_axis(part, order, axis=1)
        sims[start:stop] = np.take_along_axis(top, order, axis=1)
    return indices, sims


def pairs_at_least(a: np.ndarray, b: np.ndarray, threshold: float, *, block: int = DEFAULT_BLOCK):
    """Every ``(i, j, a[i] . b[j])`` with the dot product >= ``threshold``, ``block`` rows of
    ``a`` at a time: three arrays."""
    rows, cols, values = [], [], []
    for start in range(0, len(a), block):
        s = a[start : start + block] @ b.T
        i, j = np.nonzero(s >= threshold)
        rows.append(i + start)
        cols.append(j)
        values.append(s[i, j])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(values)
