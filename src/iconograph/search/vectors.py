"""A LanceDB table of normalised image vectors with their latest predictions, searched by cosine.

One row per image: ``path`` (the key), ``hash`` (content), ``vector`` (L2-normalised float32),
``labels`` / ``scores`` (the latest predictions, best first). Search is

* **exact** below ``ann_threshold`` rows: every row's cosine, over the vectors held in memory
  (loaded once per table version, up to ``memory_limit`` bytes of vectors; numpy, one
  matrix-vector product) or, for larger tables, LanceDB's flat scan, which reads the vectors
  from disk on every query; or
* **ann** once the table is that large: an IVF_HNSW_SQ index (HNSW graphs over 8-bit scalar
  quantised vectors) or an IVF_PQ index, queried with :class:`QuerySettings` (``nprobes``,
  HNSW's beam ``ef``, and ``refine_factor``: re-rank that many times ``k`` candidates on the
  full vectors); :mod:`iconograph.search.tuning` chooses them for a target recall.

Rows appended after the index was built are still found (LanceDB scans unindexed rows flat and
merges them in); :meth:`VectorTable.maintain` folds them into the existing index with
``optimize()``, which extends the index with the new rows instead of retraining it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from iconograph.classification.decisions import l2_normalize

DEFAULT_ANN_THRESHOLD = 20_000
# The HNSW index is a set of graphs, one per IVF partition of about HNSW_PARTITION_ROWS rows:
# building many small graphs costs less than one large one (at 10^5 x 512, 10 graphs with
# LanceDB's default degree and construction beam built in 234 s on a busy 2-core machine, one
# graph of degree 32 and beam 300 in 299 s on a quieter one), and a query probes QUERY_NPROBES of
# them. bench_search.py on embedding-like vectors at 10^6 x 512: 100 graphs built in 169 s;
# recall@10 0.998 at p95 26 ms with the defaults below, 0.974 at 14 ms with nprobes 5.
# `iconograph index --target-recall` tunes these per collection.
HNSW_M = 20  # graph degree (LanceDB's default)
HNSW_EF_CONSTRUCTION = 150
HNSW_PARTITION_ROWS = 10_000
QUERY_NPROBES = 20
QUERY_EF = 300  # beam width per graph
QUERY_REFINE = 10  # re-rank 10*k candidates on the full-precision vectors
INDEX_TYPES = ("IVF_HNSW_SQ", "IVF_PQ")
# Exact scans hold the vectors in memory up to this many bytes (250,000 x 512 float32); above,
# LanceDB's flat scan reads them from disk per query. bench_search.py: an exact search in memory
# costs what numpy's product does (10^6 x 512: 112 ms against numpy's 109 ms; LanceDB from disk
# 1,097 ms); the limit bounds what a service holds per collection.
MEMORY_EXACT_BYTES = 512 * 1024 * 1024
STATE_TTL = 2.0  # seconds the index state is reused between writes (it costs LanceDB round trips)


@dataclass(frozen=True)
class SearchHit:
    path: str
    score: float  # cosine similarity
    labels: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()

    def to_record(self, rank: int | None = None) -> dict:
        record = {"path": self.path, "score": self.score}
        if rank is not None:
            record["rank"] = rank
        record["labels"] = [{"label": lab, "score": s} for lab, s in zip(self.labels, self.scores)]
        return record


@dataclass
class IndexState:
    """What a search will use: ``mode`` is ``exact`` or ``ann``."""

    rows: int
    mode: str
    index_type: str | None = None
    indexed_rows: int = 0
    unindexed_rows: int = 0
    action: str = "none"  # none | created | updated (incremental) | ...
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def describe(self) -> str:
        if self.mode == "exact":
            return f"exact search (flat scan of {self.rows} rows)"
        text = f"ann search ({self.index_type}, {self.indexed_rows} indexed rows"
        if self.unindexed_rows:
            text += f", {self.unindexed_rows} scanned flat until the next index update"
        return text + ")"

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "mode": self.mode,
            "index_type": self.index_type,
            "indexed_rows": self.indexed_rows,
            "unindexed_rows": self.unindexed_rows,
            "action": self.action,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class QuerySettings:
    """How an ANN query runs: IVF partitions probed, HNSW beam width, re-rank factor (None: LanceDB's default)."""

    nprobes: int | None = None
    ef: int | None = None
    refine_factor: int | None = None

    def to_dict(self) -> dict:
        return {
            k: v for k, v in (("nprobes", self.nprobes), ("ef", self.ef), ("refine_factor", self.refine_factor)) if v
        }

    @classmethod
    def from_dict(cls, data: dict | None) -> QuerySettings:
        data = data or {}
        return cls(data.get("nprobes"), data.get("ef"), data.get("refine_factor"))

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_dict().items()) or "LanceDB defaults"

    def apply(self, builder, k: int):
        if self.nprobes:
            builder = builder.nprobes(self.nprobes)
        if self.ef:
            builder = builder.ef(max(self.ef, k * (self.refine_factor or 1)))  # lance: ef >= candidates
        if self.refine_factor:
            builder = builder.refine_factor(self.refine_factor)
        return builder


DEFAULT_SETTINGS = {
    "IVF_HNSW_SQ": QuerySettings(nprobes=QUERY_NPROBES, ef=QUERY_EF, refine_factor=QUERY_REFINE),
    "IVF_PQ": QuerySettings(nprobes=QUERY_NPROBES, refine_factor=QUERY_REFINE),
}


@dataclass
class _Memory:
    """A table version's vectors held in memory for exact scans."""

    version: int
    matrix: np.ndarray  # rows x dim, float32, L2-normalised
    rows: pa.Table  # path, labels, scores, in the matrix's order
    positions: dict[str, int] | None = None  # path -> row, built for the first filtered search


def sql_string(value: str) -> str:
    """A SQL string literal (single quotes doubled): filters are built from user-given labels."""
    return "'" + str(value).replace("'", "''") + "'"


def schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("path", pa.string()),
            pa.field("hash", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
            pa.field("labels", pa.list_(pa.string())),
            pa.field("scores", pa.list_(pa.float32())),
        ]
    )


class VectorTable:
    """The vectors of one collection under one model (a LanceDB table in the store)."""

    def __init__(
        self,
        db,
        name: str,
        ann_threshold: int = DEFAULT_ANN_THRESHOLD,
        *,
        index_type: str = "IVF_HNSW_SQ",
        query_settings: dict[str, QuerySettings] | None = None,
        memory_limit: int = MEMORY_EXACT_BYTES,
    ):
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index type must be one of {', '.join(INDEX_TYPES)}; got {index_type!r}")
        self.db = db
        self.name = name
        self.ann_threshold = ann_threshold
        self.index_type = index_type
        self.query_settings = dict(query_settings or {})  # index type -> tuned settings
        self.memory_limit = memory_limit
        self._memory: _Memory | None = None
        self._memory_lock = threading.Lock()
        self._lock = threading.Lock()  # one writer per table in this process
        self._table = None
        self._state: tuple[float, IndexState] | None = None

    @property
    def table(self):
        if self._table is None:
            try:
                self._table = self.db.open_table(self.name)
            except (ValueError, FileNotFoundError):
                return None
        return self._table

    def count(self) -> int:
        table = self.table
        return 0 if table is None else table.count_rows()

    @property
    def dim(self) -> int | None:
        table = self.table
        return None if table is None else table.schema.field("vector").type.list_size

    def refresh(self) -> None:
        """See commits made by other processes (an ``index`` run while the service is up)."""
        if self.table is not None:
            self.table.checkout_latest()
        self._state = None

    # ---- writes ---------------------------------------------------------------------------

    def upsert(
        self,
        paths: Sequence[str],
        hashes: Sequence[str],
        vectors: np.ndarray,
        labels: Sequence[Sequence[str]] | None = None,
        scores: Sequence[Sequence[float]] | None = None,
    ) -> None:
        """Insert new rows and replace rows with the same path, in one atomic commit."""
        if not len(paths):
            return
        vectors = l2_normalize(np.asarray(vectors, np.float32))
        labels = labels if labels is not None else [[] for _ in paths]
        scores = scores if scores is not None else [[] for _ in paths]
        batch = pa.table(
            {
                "path": pa.array(list(paths), pa.string()),
                "hash": pa.array(list(hashes), pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
                "labels": pa.array([list(x) for x in labels], pa.list_(pa.string())),
                "scores": pa.array([[float(s) for s in x] for x in scores], pa.list_(pa.float32())),
            },
            schema=schema(vectors.shape[1]),
        )
        self._state = None
        with self._lock:
            if self.table is None:
                self._table = self.db.create_table(self.name, schema=batch.schema, exist_ok=True)
            if self.table.schema.field("vector").type.list_size != vectors.shape[1]:
                raise ValueError(f"vectors of dimension {vectors.shape[1]} do not fit table {self.name}")
            if self._table.count_rows() == 0:
                self._table.add(batch)
            else:
                self._table.merge_insert("path").when_matched_update_all().when_not_matched_insert_all().execute(batch)

    def delete_paths(self, paths: Sequence[str]) -> None:
        if not paths or self.table is None:
            return
        self._state = None
        with self._lock:
            for start in range(0, len(paths), 1000):
                part = paths[start : start + 1000]
                self.table.delete("path IN (" + ", ".join(sql_string(p) for p in part) + ")")

    # ---- the index ------------------------------------------------------------------------

    def vector_index(self):
        table = self.table
        if table is None:
            return None
        return next((ix for ix in table.list_indices() if "vector" in ix.columns), None)

    def state(self) -> IndexState:
        cached = self._state
        if cached is not None and time.monotonic() - cached[0] < STATE_TTL:
            return replace(cached[1])
        state = self._read_state()
        self._state = (time.monotonic(), state)
        return replace(state)

    def _read_state(self) -> IndexState:
        rows = self.count()
        index = self.vector_index()
        if index is None:
            return IndexState(rows, "exact")
        stats = self.table.index_stats(index.name)
        return IndexState(
            rows,
            "ann",
            stats.index_type,
            stats.num_indexed_rows,
            stats.num_unindexed_rows,
            extra={"num_indices": stats.num_indices, "name": index.name},
        )

    def maintain(self, rebuild: bool = False) -> IndexState:
        """Build the ANN index once the table passes the threshold; otherwise extend it incrementally."""
        started = time.perf_counter()
        self._state = None
        state = self.state()
        if state.rows == 0:
            return state
        action = "none"
        with self._lock:
            if (state.mode == "exact" and state.rows >= self.ann_threshold) or (rebuild and state.rows >= 2):
                self._create_index(state.rows)
                action = "created"
            elif state.mode == "ann" and state.unindexed_rows:
                # optimize(): compacts fragments and adds unindexed rows to the index as a new
                # delta segment (no retraining of partitions or quantiser)
                self.table.optimize()
                action = "updated incrementally"
            elif self.table.stats()["fragment_stats"]["num_fragments"] > 64:
                self.table.optimize()
                action = "compacted"
        self._state = None
        state = self.state()
        state.action = action
        state.seconds = time.perf_counter() - started
        return state

    def _create_index(self, rows: int) -> None:
        from lancedb.index import HnswSq, IvfPq

        if self.index_type == "IVF_PQ":
            # rows / 8192 partitions (LanceDB's default); sub-vectors of 8 dimensions, 8 bits each
            # (LanceDB's default is 16 dimensions: recall@10 0.69 at refine 10 on 10^5 x 512
            # embedding-like vectors, against 0.97 at 10^6 with 8; bench_search.py)
            config = IvfPq(distance_type="cosine", num_sub_vectors=max(1, self.dim // 8))
        else:
            config = HnswSq(
                distance_type="cosine",
                num_partitions=max(1, -(-rows // HNSW_PARTITION_ROWS)),
                m=HNSW_M,
                ef_construction=HNSW_EF_CONSTRUCTION,
            )
        self.table.create_index("vector", config=config, replace=True)

    def settings(self, index_type: str | None = None) -> QuerySettings:
        """The query settings an ANN search uses: the tuned ones, else the defaults of the index type."""
        index_type = index_type or self.state().index_type or self.index_type
        return self.query_settings.get(index_type) or DEFAULT_SETTINGS.get(index_type, QuerySettings())

    # ---- reads ----------------------------------------------------------------------------

    def search(
        self,
        query: np.ndarray,
        k: int = 20,
        where: str | None = None,
        mode: str = "auto",
        settings: QuerySettings | None = None,
        *,
        memory: bool = True,
    ) -> tuple[list[SearchHit], str]:
        """Top ``k`` rows by cosine similarity to ``query``; returns (hits, mode used).

        ``settings``: the ANN query settings (default :meth:`settings`). ``memory=False``: an
        exact search always scans on disk (LanceDB's flat scan), whatever the table's size.
        """
        table = self.table
        if table is None:
            return [], "exact"
        query = l2_normalize(np.asarray(query, np.float32).reshape(-1))
        state = self.state()
        if mode == "ann" and state.mode != "ann":
            raise ValueError(
                f"no ANN index yet ({state.rows} rows, threshold {self.ann_threshold}); build one with "
                "'iconograph index SOURCE --rebuild-index'"
            )
        if mode not in ("auto", "exact", "ann"):
            raise ValueError(f"search mode must be auto, exact or ann; got {mode!r}")
        mode = state.mode if mode == "auto" else mode
        if mode == "exact" and memory and state.rows * query.size * 4 <= self.memory_limit:
            return self._search_memory(query, k, where), mode
        builder = table.search(query, vector_column_name="vector").distance_type("cosine").limit(k)
        builder = builder.select(["path", "labels", "scores", "_distance"])
        if mode == "exact":
            builder = builder.bypass_vector_index()
        else:
            builder = (settings or self.settings(state.index_type)).apply(builder, k)
        if where:
            builder = builder.where(where, prefilter=True)
        result = builder.to_arrow()
        hits = [
            SearchHit(path, 1.0 - float(distance), tuple(labels or ()), tuple(float(s) for s in scores or ()))
            for path, distance, labels, scores in zip(
                result.column("path").to_pylist(),
                result.column("_distance").to_pylist(),
                result.column("labels").to_pylist(),
                result.column("scores").to_pylist(),
            )
        ]
        return hits, mode

    # ---- exact scans in memory -------------------------------------------------------------

    def _memory_rows(self) -> _Memory:
        """The current table version's vectors and predictions, loaded once per version."""
        version = self.table.version
        held = self._memory
        if held is not None and held.version == version:
            return held
        with self._memory_lock:
            held = self._memory
            if held is None or held.version != version:
                data = self.rows(("path", "vector", "labels", "scores"))
                combined = data.column("vector").combine_chunks()
                matrix = combined.values.to_numpy(zero_copy_only=False).reshape(-1, combined.type.list_size)
                held = self._memory = _Memory(version, np.ascontiguousarray(matrix), data.drop_columns(["vector"]))
            return held

    def drop_memory(self) -> None:
        """Forget the vectors held for exact scans (they are loaded again by the next one)."""
        self._memory = None

    def _search_memory(self, query: np.ndarray, k: int, where: str | None) -> list[SearchHit]:
        held = self._memory_rows()
        sims = held.matrix @ query
        if where:
            # the filter runs in LanceDB over the scalar columns only (no vectors read)
            if held.positions is None:
                held.positions = {p: i for i, p in enumerate(held.rows.column("path").to_pylist())}
            kept = self.table.search().where(where).select(["path"]).limit(None).to_arrow()
            candidates = np.fromiter(
                (held.positions[p] for p in kept.column("path").to_pylist()), np.int64, kept.num_rows
            )
        else:
            candidates = None
        top = top_k(sims if candidates is None else sims[candidates], k)
        if candidates is not None:
            top = candidates[top]
        picked = held.rows.take(pa.array(top, pa.int64()))
        return [
            SearchHit(path, float(sims[i]), tuple(labels or ()), tuple(float(s) for s in scores or ()))
            for path, i, labels, scores in zip(
                picked.column("path").to_pylist(),
                top.tolist(),
                picked.column("labels").to_pylist(),
                picked.column("scores").to_pylist(),
            )
        ]

    def exact_neighbours(
        self, queries: np.ndarray, k: int, batch_rows: int = 65_536
    ) -> tuple[list[list[str]], np.ndarray]:
        """Exact top ``k`` paths and cosines of each query, streaming the vectors in batches
        (memory stays flat at any table size; for tuning and checking ANN settings)."""
        queries = l2_normalize(np.asarray(queries, np.float32))
        best_paths = np.empty((len(queries), 0), object)
        best_sims = np.empty((len(queries), 0), np.float32)
        for batch in self.table.to_lance().to_batches(columns=["path", "vector"], batch_size=batch_rows):
            column = batch.column("vector")
            matrix = column.values.to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size)
            sims = queries @ matrix.T
            if sims.shape[1] > k:
                part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
                sims = np.take_along_axis(sims, part, axis=1)
            else:
                part = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
            paths = np.asarray(batch.column("path").to_pylist(), object)[part]
            sims = np.concatenate([best_sims, sims], axis=1)
            paths = np.concatenate([best_paths, paths], axis=1)
            keep = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            best_sims = np.take_along_axis(sims, keep, axis=1)
            best_paths = np.take_along_axis(paths, keep, axis=1)
        return best_paths.tolist(), best_sims

    def search_many(
        self, queries: np.ndarray, k: int, mode: str = "auto", settings: QuerySettings | None = None
    ) -> list[list[tuple[str, float]]]:
        """The top ``k`` ``(path, cosine)`` of each query row, in one LanceDB multi-vector query
        (the audit's self-join asks a batch of rows at a time)."""
        table = self.table
        queries = l2_normalize(np.asarray(queries, np.float32))
        found: list[list[tuple[str, float]]] = [[] for _ in range(len(queries))]
        if table is None or not len(queries):
            return found
        state = self.state()
        mode = state.mode if mode == "auto" else mode
        builder = table.search(list(queries), vector_column_name="vector").distance_type("cosine").limit(k)
        builder = builder.select(["path", "_distance"])
        if mode == "exact":
            builder = builder.bypass_vector_index()
        else:
            builder = (settings or self.settings(state.index_type)).apply(builder, k)
        result = builder.to_arrow()
        has_index = "query_index" in result.column_names
        query_index = result.column("query_index").to_pylist() if has_index else [0] * result.num_rows
        for q, path, distance in zip(
            query_index, result.column("path").to_pylist(), result.column("_distance").to_pylist()
        ):
            found[q].append((path, 1.0 - float(distance)))
        for hits in found:
            hits.sort(key=lambda h: -h[1])
        return found

    def rows(self, columns: Sequence[str] = ("path", "hash", "labels", "scores")) -> pa.Table:
        table = self.table
        if table is None:
            return pa.table({c: [] for c in columns})
        return table.search().select(list(columns)).limit(None).to_arrow()

    def vectors_for(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
        table = self.table
        if table is None or not paths:
            return {}
        where = "path IN (" + ", ".join(sql_string(p) for p in paths) + ")"
        rows = table.search().where(where).select(["path", "vector"]).limit(None).to_arrow()
        if rows.num_rows == 0:
            return {}
        combined = rows.column("vector").combine_chunks()
        matrix = combined.values.to_numpy(zero_copy_only=False).reshape(-1, combined.type.list_size)
        return dict(zip(rows.column("path").to_pylist(), matrix))


def top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values, largest first (ties: lower position first)."""
    if k < len(sims):
        part = np.argpartition(-sims, k - 1)[:k]
        return part[np.lexsort((part, -sims[part]))]
    return np.argsort(-sims, kind="stable")
