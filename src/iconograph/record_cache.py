"""A persistent cache of small JSON results (detections, captions, descriptions) in the store.

One LanceDB table per configuration (name = kind + digest of model, preprocessing and settings),
rows ``(key, value)`` with the key an image content hash or a request digest and the value a JSON
document. Appends are atomic Lance commits, so an interrupted run keeps every flushed result and
the next run computes only what is missing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import pyarrow as pa

from iconograph.store import COMPACT_AFTER_FRAGMENTS, Store


class RecordCache:
    def __init__(self, store: Store, name: str):
        self.store = store
        self.name = name
        self._offsets: dict[str, int] | None = None
        self._lock = threading.Lock()

    @property
    def table(self):
        return self.store.open_table(self.name)

    def lookup(self, keys: Sequence[str]) -> dict[str, dict]:
        """The cached values for those of ``keys`` that are present."""
        table = self.table
        if table is None or not keys:
            return {}
        with self._lock:
            if self._offsets is None:
                column = table.search().select(["key"]).limit(None).to_arrow().column("key").to_pylist()
                self._offsets = {}
                for offset, key in enumerate(column):
                    self._offsets.setdefault(key, offset)  # concurrent writers may duplicate: the first wins
            wanted = sorted({self._offsets[k] for k in keys if k in self._offsets})
        found: dict[str, dict] = {}
        for start in range(0, len(wanted), 8192):
            rows = table.take_offsets(wanted[start : start + 8192]).select(["key", "value"]).to_arrow()
            found.update(zip(rows.column("key").to_pylist(), map(json.loads, rows.column("value").to_pylist())))
        return found

    def add(self, items: dict[str, dict]) -> None:
        """Append one atomic batch."""
        if not items:
            return
        batch = pa.table(
            {
                "key": pa.array(list(items), pa.string()),
                "value": pa.array([json.dumps(v, ensure_ascii=False) for v in items.values()], pa.string()),
            }
        )
        with self._lock:
            table = self.table or self.store.db.create_table(self.name, schema=batch.schema, exist_ok=True)
            table.add(batch)
            self._offsets = None

    def compact(self) -> None:
        table = self.table
        if table is not None and table.stats()["fragment_stats"]["num_fragments"] > COMPACT_AFTER_FRAGMENTS:
            table.optimize()

    def count(self) -> int:
        table = self.table
        return 0 if table is None else table.count_rows()
