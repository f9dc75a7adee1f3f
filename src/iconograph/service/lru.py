"""The one least-recently-used cache of the service (query texts, uploads, classifiers)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """The ``size`` most recently used values, each computed on a miss; safe across threads.

    Not ``functools.lru_cache``: uploads are keyed by a digest of their bytes rather than by
    the arguments of the computation, and the lock here guards only the bookkeeping, never the
    computation, which waits for a model's inference lock. Two threads missing the same key at
    once both compute it; the value is the same, and the last one is kept.
    """

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._values)
