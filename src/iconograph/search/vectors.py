"""A LanceDB table of normalised image vectors with their latest predictions, searched by cosine.

One row per image: ``path`` (the key), ``hash`` (content), ``vector`` (L2-normalised float32),
``labels`` / ``scores`` (the latest predictions, best first). Search is

* **exact** below ``ann_threshold`` rows: LanceDB's flat scan (every row's cosine distance), or
* **ann** once the table is that large: an IVF_HNSW_SQ index (HNSW graph over 8-bit scalar
  quantised vectors), queried with a wide beam (``ef``) and re-ranked on the exact vectors
  (``refine_factor``).

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
HNSW_M = 32  # graph degree: 20 (LanceDB's default) loses recall on high-dimensional embeddings
HNSW_EF_CONSTRUCTION = 300
QUERY_EF = 2500  # beam width: recall@10 0.98 on 100k random 512-d vectors (1000: 0.85); bench_search.py
QUERY_REFINE = 10  # re-rank 10*k candidates on the full-precision vectors
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

    def __init__(self, db, name: str, ann_threshold: int = DEFAULT_ANN_THRESHOLD):
        self.db = db
        self.name = name
        self.ann_threshold = ann_threshold
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
        from lancedb.index import HnswSq

        self.table.create_index(
            "vector",
            config=HnswSq(distance_type="cosine", m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION),
            replace=True,
        )

    # ---- reads ----------------------------------------------------------------------------

    def search(
        self,
        query: np.ndarray,
        k: int = 20,
        where: str | None = None,
        mode: str = "auto",
        ef: int = QUERY_EF,
        refine_factor: int = QUERY_REFINE,
    ) -> tuple[list[SearchHit], str]:
        """Top ``k`` rows by cosine similarity to ``query``; returns (hits, mode used)."""
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
        builder = table.search(query, vector_column_name="vector").distance_type("cosine").limit(k)
        builder = builder.select(["path", "labels", "scores", "_distance"])
        if mode == "exact":
            builder = builder.bypass_vector_index()
        else:
            builder = builder.ef(max(ef, k * refine_factor)).refine_factor(refine_factor)  # lance: ef >= candidates
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

    def search_many(
        self, queries: np.ndarray, k: int, mode: str = "auto", ef: int = QUERY_EF, refine_factor: int = QUERY_REFINE
    ) -> list[list[tuple[str, float]]]:
        """The top ``k`` ``(path, cosine)`` of each query row, in one LanceDB multi-vector query
        (the audit's self-join asks a batch of rows at a time)."""
        table = self.table
        queries = l2_normalize(np.asarray(queries, np.float32))
        found: list[list[tuple[str, float]]] = [[] for _ in range(len(queries))]
        if table is None or not len(queries):
            return found
        mode = self.state().mode if mode == "auto" else mode
        builder = table.search(list(queries), vector_column_name="vector").distance_type("cosine").limit(k)
        builder = builder.select(["path", "_distance"])
        if mode == "exact":
            builder = builder.bypass_vector_index()
        else:
            builder = builder.ef(max(ef, k * refine_factor)).refine_factor(refine_factor)
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
