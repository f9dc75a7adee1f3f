"""Nearest neighbours of a set of vectors among themselves, never through an n x n matrix.

Two paths, the same result shape (``(indices, similarities)``, each ``(n, k)``, best first):

- :func:`knn_self_join` is exact: a matrix product of L2-normalised vectors, a block of rows at a
  time, keeping the top ``k`` of each row (``torch.topk``: numpy's ``argpartition`` over a
  1024 x 100 000 block is about 20x slower on this machine). The block holds at most
  :data:`BLOCK_BYTES` of similarities whatever ``n`` is; with torch's and BLAS's workspaces the
  peak RSS grew by 329 MiB at 100 000 x 512 (``benchmarks/bench_audit.py``, 910 s on 2 busy
  cores); the time is n^2 d.
- :func:`knn_from_table` goes through a LanceDB :class:`~iconograph.search.vectors.VectorTable`:
  the rows are read in batches and each batch is one multi-vector query (``query_index``), so
  with the table's ANN index (IVF_HNSW_SQ, built once a collection passes its threshold) the
  time is about n log n and no more than a batch of vectors is held besides the results. Without
  an index LanceDB scans flat (exact). :func:`knn_via_index` puts vectors that are not yet in a
  collection into a scratch table in the store, indexes it and joins it the same way.

:func:`self_join` chooses: exact up to :data:`EXACT_LIMIT` vectors, the index above (when a store
is given).
"""

from __future__ import annotations

import uuid

import numpy as np

from iconograph.classification.decisions import l2_normalize

EXACT_LIMIT = 50_000  # vectors; above, the ANN index (exact: ~6 min at 10^5 x 512 on 2 busy cores)
BLOCK_BYTES = 64 * 2**20  # similarities held at once by the exact join
DEFAULT_BLOCK = 1024  # rows per block at most
QUERY_BATCH = 256  # query vectors per LanceDB multi-vector query


def knn_self_join(vectors: np.ndarray, k: int, *, block: int = DEFAULT_BLOCK, normalize: bool = True):
    """The ``k`` most cosine-similar other rows of each row: ``(indices, similarities)``, each
    ``(n, k)``, best first (a row is never its own neighbour; ties broken by the lower index).
    ``k`` is capped at ``n - 1``."""
    import torch

    x = np.asarray(vectors, dtype=np.float32)
    if normalize:
        x = l2_normalize(x)
    n = len(x)
    k = max(0, min(k, n - 1))
    indices = np.zeros((n, k), dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return indices, sims
    block = max(1, min(block, BLOCK_BYTES // (4 * n)))
    # Take one more than k at a block's edge so ties there can still be broken by index below.
    take = min(n, k + 1)
    full = torch.from_numpy(np.ascontiguousarray(x))
    with torch.inference_mode():
        for start in range(0, n, block):
            stop = min(n, start + block)
            s = full[start:stop] @ full.T  # (block, n)
            rows = torch.arange(stop - start)
            s[rows, rows + start] = -torch.inf  # not its own neighbour
            top, part = torch.topk(s, take, dim=1)
            top, part = top.numpy(), part.numpy()
            order = np.lexsort((part, -top), axis=1)[:, :k]  # by similarity, then index
            indices[start:stop] = np.take_along_axis(part, order, axis=1)
            sims[start:stop] = np.take_along_axis(top, order, axis=1)
    return indices, sims


def knn_from_table(table, k: int, *, batch: int = QUERY_BATCH, mode: str = "auto", progress=None):
    """The ``k`` nearest other rows of every row of a :class:`~iconograph.search.vectors.VectorTable`,
    through its index (``mode="auto"``: the ANN index when the table has one, else a flat scan):
    ``(paths, indices, similarities)``, indices into ``paths`` (the table's row order)."""
    paths = table.rows(["path"]).column("path").to_pylist()
    n = len(paths)
    k = max(0, min(k, n - 1))
    indices = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    if k == 0:
        return paths, indices, sims
    row_of = {p: i for i, p in enumerate(paths)}
    done = 0
    for record_batch in table.table.to_lance().to_batches(columns=["path", "vector"], batch_size=batch):
        names = record_batch.column("path").to_pylist()
        vectors = record_batch.column("vector")
        queries = vectors.values.to_numpy(zero_copy_only=False).reshape(len(names), vectors.type.list_size)
        for q, hits in enumerate(table.search_many(queries, k + 1, mode=mode)):
            row = row_of[names[q]]
            found = [(row_of[p], s) for p, s in hits if p != names[q]][:k]
            indices[row, : len(found)] = [i for i, _ in found]
            sims[row, : len(found)] = [s for _, s in found]
        done += len(names)
        if progress is not None:
            progress(done, n)
    return paths, indices, sims


def knn_via_index(vectors: np.ndarray, k: int, store, *, ann: bool = True):
    """:func:`knn_self_join`'s result through a scratch LanceDB table in ``store`` (dropped after),
    with its ANN index unless ``ann=False`` (then LanceDB's exact flat scan)."""
    from iconograph.search.vectors import VectorTable

    name = f"audit_scratch_{uuid.uuid4().hex[:12]}"
    table = VectorTable(store.db, name, ann_threshold=2 if ann else 2**62)
    x = np.asarray(vectors, dtype=np.float32)
    try:
        ids = [str(i) for i in range(len(x))]
        for start in range(0, len(x), 100_000):
            stop = start + 100_000
            table.upsert(ids[start:stop], [""] * len(ids[start:stop]), x[start:stop])
        table.maintain()
        paths, indices, sims = knn_from_table(table, k)
        order = np.argsort(np.array([int(p) for p in paths]))
        back = np.array([int(p) for p in paths])  # table row -> input row
        indices = np.where(indices >= 0, back[np.maximum(indices, 0)], -1)
        return indices[order], sims[order]
    finally:
        store.db.drop_table(name)


def self_join(vectors: np.ndarray, k: int, *, store=None, exact_limit: int = EXACT_LIMIT):
    """Exact up to ``exact_limit`` vectors (or without a store), through the ANN index above."""
    if store is None or len(vectors) <= exact_limit:
        return knn_self_join(vectors, k)
    return knn_via_index(vectors, k, store)


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
