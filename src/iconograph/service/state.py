"""What the service holds between requests: its configuration, store, models and open collections."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException

from iconograph.engine.store import Store
from iconograph.search import SearchCollection, list_collections
from iconograph.search.collection import NAME_PATTERN
from iconograph.service.models import Models


@dataclass
class ServiceConfig:
    token: str
    store: Any = None  # Store, a folder, or None for the default store
    model: str | None = None  # for /api/classify when no collection is named
    max_upload_bytes: int = 20 * 1024 * 1024
    device: str | None = None


class Learning:
    """One background "learn" per collection at a time (:func:`iconograph.search.active.learn`
    on a thread): the page keeps working while it runs and polls its status."""

    def __init__(self):
        self._guard = threading.Lock()
        self._running: dict[str, threading.Thread] = {}
        self._errors: dict[str, str | None] = {}

    def start(self, collection: SearchCollection) -> dict:
        with self._guard:
            if collection.name not in self._running:
                thread = threading.Thread(target=self._run, args=(collection,), daemon=True)
                self._running[collection.name] = thread
                self._errors[collection.name] = None
                thread.start()
        return self.status(collection.name)

    def _run(self, collection: SearchCollection) -> None:
        from iconograph.errors import UserError
        from iconograph.search.active import learn

        try:
            learn(collection)
        except UserError as exc:  # too few reviews and the like: the page says why
            self._errors[collection.name] = str(exc)
        finally:
            with self._guard:
                self._running.pop(collection.name, None)

    def status(self, name: str) -> dict:
        with self._guard:
            return {"running": name in self._running, "error": self._errors.get(name)}


@dataclass
class ServiceState:
    config: ServiceConfig
    store: Store
    models: Models
    _collections: dict[str, SearchCollection] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    learning: Learning = field(default_factory=Learning)

    @classmethod
    def from_config(cls, config: ServiceConfig) -> ServiceState:
        store = config.store if isinstance(config.store, Store) else Store(config.store)
        return cls(config, store, Models(store, config.device))

    def collection(self, name: str) -> SearchCollection:
        """The indexed collection ``name``, opened once; 404 for any other name."""
        with self._guard:
            if name not in self._collections:
                # a name the pattern refuses names no collection: no need to look for it
                known = NAME_PATTERN.match(name) and name in list_collections(self.store)
                found = SearchCollection(name, self.store) if known else None
                if found is None or not found.exists:
                    raise HTTPException(404, f"no collection named {name!r}")
                self._collections[name] = found
            return self._collections[name]
