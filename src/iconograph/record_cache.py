"""A persistent cache of small JSON results (detections, captions, descriptions) in the store.

One Lance table per configuration (name = kind + digest of model, preprocessing and settings),
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
    """JSON values keyed by a string, appended, never rewritten. Read and written with ``lance``
    directly (cheap to import); the table lives in the store's Lance folder like every other."""

    def __init__(self, store: Store, name: str):
        self.store = store
        self.name = name
        self.uri = store.root / "lance" / f"{name}.lance"
        self._offsets: dict[str, int] | None = None
        self._lock = threading.Lock()

    def dataset(self):
        """The latest committed version, or None before the first write."""
        import lance

        return lance.dataset(str(self.uri)) if (self.uri / "_versions").is_dir() else None

    def lookup(self, keys: Sequence[str]) -> dict[str, dict]:
        """The cached values for those of ``keys`` that are present."""
        dataset = self.dataset() if keys else None
        if dataset is None:
            return {}
        with self._lock:
            if self._offsets is None:
                self._offsets = {}
                for offset, key in enumerate(dataset.to_table(columns=["key"]).column("key").to_pylist()):
                    self._offsets.setdefault(key, offset)  # concurrent writers may duplicate: the first wins
            wanted = sorted({self._offsets[k] for k in keys if k in self._offsets})
        found: dict[str, dict] = {}
        for start in range(0, len(wanted), 8192):
            rows = dataset.take(wanted[start : start + 8192], columns=["key", "value"])
            found.update(zip(rows.column("key").to_pylist(), map(json.loads, rows.column("value").to_pylist())))
        return found

    def add(self, items: dict[str, dict]) -> None:
        """Append one atomic batch (a single Lance commit)."""
        import lance

        if not items:
            return
        batch = pa.table(
            {
                "key": pa.array(list(items), pa.string()),
                "value": pa.array([json.dumps(v, ensure_ascii=False) for v in items.values()], pa.string()),
            }
        )
        with self._lock:
            if self.dataset() is None:
                try:
                    lance.write_dataset(batch, str(self.uri), mode="create")
                    return
                except (OSError, ValueError):  # another writer created it first: append instead
                    pass
            lance.write_dataset(batch, str(self.uri), mode="append")
            self._offsets = None

    def compact(self) -> None:
        """Merge the small fragments that many appends leave behind."""
        dataset = self.dataset()
        if dataset is not None and len(dataset.get_fragments()) > COMPACT_AFTER_FRAGMENTS:
            dataset.optimize.compact_files()

    def count(self) -> int:
        dataset = self.dataset()
        return 0 if dataset is None else dataset.count_rows()
