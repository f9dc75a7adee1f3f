"""Models of the service: embedders loaded on first use, inference one pass at a time per model.

One forward pass at a time per model keeps torch from oversubscribing the cores; query texts,
uploads (by content hash) and zero-shot classifiers are kept in small LRU caches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from iconograph.engine.store import Store
from iconograph.reading.decode import content_hash
from iconograph.service.lru import LRU

T = TypeVar("T")


class Models:
    def __init__(self, store: Store, device: str | None):
        self.store = store
        self.device = device
        self._loaded: dict[str, tuple[Any, threading.Lock]] = {}  # spec -> (embedder, inference lock)
        self._loading = threading.Lock()
        self._texts: LRU[np.ndarray] = LRU(4096)
        self._uploads: LRU[np.ndarray] = LRU(1024)
        self._classifiers: LRU[Any] = LRU(64)

    def embedder(self, spec: str) -> tuple[Any, threading.Lock]:
        """The embedder of ``spec`` and its inference lock; raises ModelNotFoundError."""
        from iconograph.engine.embed import Embedder

        with self._loading:
            if spec not in self._loaded:
                embedder = Embedder(spec, store=self.store, workers=0, device=self.device, progress=False)
                self._loaded[spec] = (embedder, threading.Lock())
            return self._loaded[spec]

    def _infer(self, spec: str, work: Callable[[Any], T]) -> T:
        embedder, lock = self.embedder(spec)
        with lock:
            return work(embedder)

    def embed_text(self, spec: str, text: str) -> np.ndarray:
        return self._texts.get((spec, text), lambda: self._infer(spec, lambda e: e.embed_texts([text])[0]))

    def embed_upload(self, spec: str, data: bytes) -> np.ndarray:
        """One uploaded image's embedding; raises DecodeError for bytes that are no image."""
        return self._uploads.get((spec, content_hash(data)), lambda: self._infer(spec, lambda e: e.embed_bytes(data)))

    def classifier(
        self, spec: str, labels: tuple[str, ...], templates: str, multi_label: bool, threshold: float, top_k: int | None
    ):
        from iconograph.classification.zeroshot import ZeroShotClassifier

        def prepare(embedder):
            return ZeroShotClassifier(
                list(labels), templates=templates, multi_label=multi_label, threshold=threshold, top_k=top_k
            ).prepare(embedder)

        key = (spec, labels, templates, multi_label, threshold, top_k)
        return self._classifiers.get(key, lambda: self._infer(spec, prepare))
