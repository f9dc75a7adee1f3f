"""Choose ANN query settings for a target recall on queries drawn from the collection itself.

Queries are rows of the table (their vectors are what users search with: ``search --like``, and
text or image queries land among them), sampled at random and split in two halves: settings are
tried on the first (the *tuning* queries) and the one chosen is checked on the second (the
*held-out* queries), so the recall reported is not the one the choice was fitted to. Each query's
own row is left out of both its exact and its ANN neighbours (else every query finds itself).
Ground truth is the exact top ``k`` by cosine over all rows, streamed in batches
(:meth:`VectorTable.exact_neighbours`).

The candidates (:func:`candidate_settings`) are a grid over what the index type offers:
IVF partitions probed (``nprobes``), the HNSW beam (``ef``) and the re-rank factor
(``refine_factor``: that many times ``k`` candidates re-scored on the full vectors). The chosen
setting is the fastest (median latency; each query runs every setting in turn, so that a busy
machine's slow spells fall on all alike; within 10% of the fastest, the one asking least of the
index) whose recall on the tuning queries reaches the target.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from iconograph.errors import UserError
from iconograph.search.vectors import QuerySettings, VectorTable

HNSW_NPROBES = (1, 2, 5, 10, 20, 40)
HNSW_EF = (10, 20, 50, 100, 250, 500, 1000, 2500)  # lance raises a beam below k * refine to that
HNSW_REFINE = (2, 10)
PQ_NPROBES = (5, 10, 20, 40, 80, 160)
PQ_REFINE = (1, 3, 10, 30, 100)


@dataclass(frozen=True)
class Trial:
    settings: QuerySettings
    recall: float  # mean recall@k against exact
    p50_ms: float
    p95_ms: float

    def to_dict(self) -> dict:
        return {
            "settings": self.settings.to_dict(),
            "recall": round(self.recall, 4),
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
        }


@dataclass
class Tuning:
    """The settings tried on the tuning queries, the one chosen, and its check on held-out queries."""

    index_type: str
    rows: int
    k: int
    queries: int  # per half
    target_recall: float | None
    trials: list[Trial] = field(default_factory=list)
    chosen: Trial | None = None
    heldout: Trial | None = None
    reached: bool = False
    query_paths: list[str] = field(default_factory=list)  # the rows sampled as queries (both halves)

    def table(self) -> str:
        head = f"{'settings':<36} {'recall@' + str(self.k):>9} {'p50 ms':>8} {'p95 ms':>8}"
        lines = [
            f"{self.index_type} over {self.rows} rows; {self.queries} tuning + {self.queries} held-out queries "
            "sampled from the collection, recall against exact search",
            head,
        ]
        for trial in self.trials:
            mark = "  <- chosen" if self.chosen is not None and trial is self.chosen else ""
            lines.append(
                f"{trial.settings.describe():<36} {trial.recall:9.3f} {trial.p50_ms:8.2f} {trial.p95_ms:8.2f}{mark}"
            )
        if self.heldout is not None:
            lines.append(
                f"held-out queries, chosen settings ({self.heldout.settings.describe()}): recall@{self.k} "
                f"{self.heldout.recall:.3f}, p50 {self.heldout.p50_ms:.2f} ms, p95 {self.heldout.p95_ms:.2f} ms"
            )
        if self.target_recall is not None and not self.reached:
            lines.append(f"no setting reached recall {self.target_recall}: the one with the highest recall is chosen")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "index_type": self.index_type,
            "rows": self.rows,
            "k": self.k,
            "queries": self.queries,
            "target_recall": self.target_recall,
            "reached": self.reached,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "heldout": self.heldout.to_dict() if self.heldout else None,
            "trials": [t.to_dict() for t in self.trials],
        }


def candidate_settings(index_type: str, partitions: int) -> list[QuerySettings]:
    """The grid tried for an index type with ``partitions`` IVF partitions, cheapest first."""
    probes = sorted({min(p, partitions) for p in (HNSW_NPROBES if index_type == "IVF_HNSW_SQ" else PQ_NPROBES)})
    if index_type == "IVF_HNSW_SQ":
        return [QuerySettings(nprobes=p, ef=ef, refine_factor=r) for p in probes for r in HNSW_REFINE for ef in HNSW_EF]
    if index_type == "IVF_PQ":
        return [QuerySettings(nprobes=p, refine_factor=r) for p in probes for r in PQ_REFINE]
    raise UserError(f"cannot tune an index of type {index_type}")


def tune(
    vectors: VectorTable,
    target_recall: float | None = 0.95,
    *,
    queries: int = 200,
    k: int = 10,
    seed: int = 0,
    candidates: list[QuerySettings] | None = None,
) -> Tuning:
    """Try ``candidates`` (default :func:`candidate_settings`) on queries sampled from the table;
    choose the fastest reaching ``target_recall`` (None: choose nothing, only measure)."""
    state = vectors.state()
    if state.mode != "ann":
        raise UserError(
            f"no ANN index to tune ({state.rows} rows, exact search finds every neighbour); "
            "build one with 'iconograph index SOURCE --rebuild-index'"
        )
    if state.rows < 2 * queries + k + 1:
        queries = max(1, (state.rows - k - 1) // 2)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(state.rows, 2 * queries, replace=False))
    sample = vectors.table.to_lance().take(picked.tolist(), columns=["path", "vector"])
    sample_paths = sample.column("path").to_pylist()
    column = sample.column("vector").combine_chunks()
    matrix = column.values.to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size)
    order = rng.permutation(len(sample_paths))  # random split into the two halves
    exact, _ = vectors.exact_neighbours(matrix, k + 1)
    truth = [[p for p in row if p != own][:k] for row, own in zip(exact, sample_paths)]

    def trials(grid: list[QuerySettings], half: np.ndarray) -> list[Trial]:
        # queries outer, settings inner: a busy machine's slow spells fall on every setting alike
        times = np.zeros((len(grid), len(half)))
        recalls = np.zeros((len(grid), len(half)))
        for j, i in enumerate(half):
            for g, settings in enumerate(grid):
                start = time.perf_counter()
                hits, _ = vectors.search(matrix[i], k + 1, mode="ann", settings=settings)
                times[g, j] = time.perf_counter() - start
                found = [h.path for h in hits if h.path != sample_paths[i]][:k]
                recalls[g, j] = len(set(found) & set(truth[i])) / k
        ms = times * 1000
        return [
            Trial(settings, float(recalls[g].mean()), float(np.percentile(ms[g], 50)), float(np.percentile(ms[g], 95)))
            for g, settings in enumerate(grid)
        ]

    partitions = _partitions(vectors)
    tuning_half, heldout_half = order[:queries], order[queries:]
    result = Tuning(state.index_type, state.rows, k, queries, target_recall, query_paths=sample_paths)
    result.trials = trials(candidates or candidate_settings(state.index_type, partitions), tuning_half)
    if target_recall is None:
        return result
    good = [t for t in result.trials if t.recall >= target_recall]
    result.reached = bool(good)
    if good:
        # the fastest; latencies within 10% of it count as equal (a busy machine's noise), and of
        # those the one asking least of the index (fewest probes, narrowest beam, least re-ranking)
        fastest = min(t.p50_ms for t in good)
        close = [t for t in good if t.p50_ms <= 1.1 * fastest]
        result.chosen = min(close, key=lambda t: _cost(t.settings, k))
    else:
        result.chosen = max(result.trials, key=lambda t: (t.recall, -t.p50_ms))
    result.heldout = trials([result.chosen.settings], heldout_half)[0]
    return result


def _cost(settings: QuerySettings, k: int) -> tuple:
    refine = settings.refine_factor or 1
    return ((settings.nprobes or 1) * max(settings.ef or 0, k * refine), refine, settings.nprobes or 1)


def _partitions(vectors: VectorTable) -> int:
    """IVF partitions of the table's vector index (lance's index statistics)."""
    # without this lance warns that its statistics will stop carrying the centroids (we need none)
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    details = vectors.table.to_lance().stats.index_stats(vectors.vector_index().name)
    return max(1, int(details["indices"][0]["num_partitions"]))
