"""The embedded store: LanceDB tables on local disk or object storage, plus small metadata files.

A store is a local folder or an object-storage URI (``s3://bucket/prefix``, ``gs://``, ``az://``):
Lance reads and writes both, with the endpoint, region and credentials taken from the usual
environment variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_ALLOW_HTTP=true`` for a plain-HTTP endpoint ...) or given as ``storage_options``. On object
storage the metadata files are one-row Lance tables too, and what only concerns this machine
(write locks, ONNX exports, thumbnails) stays in a local folder named after the URI.

Lance appends are versioned: a write becomes visible all at once when its manifest is committed,
so a process killed mid-write leaves the previous version intact (orphaned data files are
ignored and removed by compaction). Embedding caches are content-addressed tables, one per
(model, preprocessing) key, so a cache entry can never be read with the wrong dimension.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from iconograph.engine.files import atomic_write_text, user_cache_dir

COMPACT_AFTER_FRAGMENTS = 64


def default_store_path() -> str | Path:
    location = os.environ.get("ICONOGRAPH_STORE")
    if location and is_uri(location):
        return location
    return Path(location or user_cache_dir() / "store")


def is_uri(location: str | os.PathLike) -> bool:
    """An object-storage (or other) URI such as ``s3://bucket/prefix`` rather than a local path."""
    return "://" in str(location)


class Store:
    """Every table iconograph keeps (``--store DIR|URI``; default ``~/.cache/iconograph/store``).

    ``storage_options`` go to Lance for an object-storage URI (``aws_endpoint``, ``region``,
    ``allow_http`` ...; see Lance's object-store configuration); the environment supplies the rest.
    """

    def __init__(self, root: str | os.PathLike | None = None, storage_options: dict[str, str] | None = None):
        location = root if root else default_store_path()
        self.storage_options = dict(storage_options or {})
        self.remote = is_uri(location)
        if self.remote:
            from iconograph.engine.fingerprint import digest

            self.uri = str(location).rstrip("/")
            self.root = user_cache_dir() / "remote-stores" / digest(self.uri)  # this machine's side of it
        else:
            self.root = Path(location)
            self.uri = str(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def lance_uri(self, name: str) -> str:
        """Where the Lance table ``name`` lives (a path or a URI)."""
        return f"{self.uri}/lance/{name}.lance"

    def lance_options(self) -> dict:
        """Keywords for ``lance.dataset`` / ``lance.write_dataset``."""
        return {"storage_options": self.storage_options} if self.storage_options else {}

    @cached_property
    def db(self):
        import lancedb

        return lancedb.connect(f"{self.uri}/lance", storage_options=self.storage_options or None)

    def open_table(self, name: str):
        """The named table, or None when it does not exist yet."""
        try:
            return self.db.open_table(name)
        except (ValueError, FileNotFoundError):
            return None

    def table_names(self) -> list[str]:
        names, token = [], None
        while True:
            page = self.db.list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return names

    def embedding_cache(self, name: str) -> EmbeddingCache:
        return EmbeddingCache(self, name)

    def record_cache(self, name: str) -> RecordCache:
        return RecordCache(self, name)

    def read_meta(self, name: str) -> dict | None:
        if self.remote:
            return self._read_remote_meta(name)
        try:
            return json.loads((self.root / "meta" / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None

    def write_meta(self, name: str, value: dict) -> None:
        text = json.dumps(value, indent=1)
        if self.remote:
            import lance

            # Object storage has no rename; a Lance overwrite is one atomic commit just the same.
            table = pa.table({"json": pa.array([text], pa.string())})
            lance.write_dataset(table, f"{self.uri}/meta/{name}.lance", mode="overwrite", **self.lance_options())
        else:
            atomic_write_text(self.root / "meta" / f"{name}.json", text)

    def _read_remote_meta(self, name: str) -> dict | None:
        import lance

        try:
            table = lance.dataset(f"{self.uri}/meta/{name}.lance", **self.lance_options()).to_table()
            return json.loads(table.column("json")[0].as_py())
        except (OSError, ValueError, IndexError):
            return None

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"


class KeyedCache:
    """Values keyed by a string (an image content hash, a text, a request digest): one Lance
    table, appended in atomic commits, never rewritten.

    Read and written with ``lance`` directly rather than through ``lancedb``: caches are on the
    path of every run, and importing ``lance`` costs a fraction of ``lancedb``'s start-up. The
    table is an ordinary Lance dataset in the store, so ``Store.db.open_table(name)`` opens it too.
    Subclasses say how a value is stored in the ``value_column``.
    """

    value_column = "value"

    def __init__(self, store: Store, name: str):
        self.store = store
        self.name = name
        self.uri = store.lance_uri(name)
        self._index = KeyIndex()
        self._lock = threading.Lock()

    @staticmethod
    def encode(values: Sequence) -> pa.Array:
        raise NotImplementedError

    @staticmethod
    def decode(column: pa.Array) -> list:
        raise NotImplementedError

    def dataset(self):
        """The latest committed version, or None before the first write."""
        import lance

        if not self.store.remote:
            return lance.dataset(self.uri) if (Path(self.uri) / "_versions").is_dir() else None
        try:
            return lance.dataset(self.uri, **self.store.lance_options())
        except ValueError:  # "Dataset at path ... was not found"
            return None

    def lookup(self, keys: Sequence[str]) -> dict:
        """The cached values for those of ``keys`` that are present."""
        dataset = self.dataset() if keys else None
        if dataset is None:
            return {}
        with self._lock:
            self._index.refresh(dataset)
            wanted = self._index.candidates(keys)
        found: dict = {}
        asked = set(keys)
        for start in range(0, len(wanted), 8192):
            rows = dataset.take(wanted[start : start + 8192].tolist(), columns=["key", self.value_column])
            column = rows.column(self.value_column).combine_chunks()
            for key, value in zip(rows.column("key").to_pylist(), self.decode(column)):
                if key in asked:  # a 64-bit hash match is confirmed against the stored key
                    found.setdefault(key, value)  # duplicates from concurrent writers: the first wins
        return found

    def add(self, keys: Sequence[str], values: Sequence) -> int:
        """Append the entries whose keys the table does not hold yet, in one atomic commit.

        Two runs on one store may compute the same images at once; an inter-process lock around
        "which keys are there" and the append keeps every key in the table once. Returns the
        number of rows written.
        """
        import lance

        if not len(keys):
            return 0
        with self._lock, self._file_lock():
            dataset = self.dataset()
            keep = _first_new(keys, self._present(dataset, keys))
            if len(keep) < len(keys):
                keys, values = [keys[i] for i in keep], [values[i] for i in keep]
            if not keys:
                return 0
            lance.write_dataset(
                entries_table(type(self), keys, values),
                self.uri,
                mode="create" if dataset is None else "append",
                **self.store.lance_options(),
            )
            return len(keys)

    def fragment_writer(self, node_id: str | None = None) -> FragmentWriter:
        """A picklable writer of this table's data files, for processes that compute entries
        elsewhere (``--engine ray``'s model actors); :meth:`commit` makes what it wrote visible."""
        uri = self.uri if self.store.remote else os.path.abspath(self.uri)  # workers run elsewhere
        return FragmentWriter(type(self), uri, self.store.storage_options, node_id)

    def commit(self, written: Sequence[WrittenFragments]) -> int:
        """Make fragments written by :meth:`fragment_writer` part of the table, in one commit.

        As :meth:`add`, every key stays in the table once: a fragment holding a key the table (or
        an earlier fragment of ``written``) already has is left out, and its new entries are
        written again here as a fragment of their own, in the same commit. A left-out fragment's
        files stay unreferenced, as a killed run's do: readers never see them, and compaction's
        cleanup deletes them once they are 7 days old (Lance's window for files that may belong to
        a write in progress). Returns the number of rows added.
        """
        import lance

        if not written:
            return 0
        keys = [key for part in written for key in part.keys]
        with self._lock, self._file_lock():
            dataset = self.dataset()
            present = self._present(dataset, keys)
            clean, rest = _committable(written, present)
            taken = present.union(*(part.keys for part in clean))
            keep = _first_new([k for part in rest for k in part.keys], taken)
            if keep:
                entries = [(k, v) for part in rest for k, v in zip(part.keys, part.values)]
                redo = self.fragment_writer().write([entries[i][0] for i in keep], [entries[i][1] for i in keep])
                clean.append(redo)
            if not clean:
                return 0
            fragments = [fragment for part in clean for fragment in part.fragments]
            if dataset is None:
                operation, read_version = lance.LanceOperation.Overwrite(clean[0].schema, fragments), None
            else:
                operation, read_version = lance.LanceOperation.Append(fragments), dataset.version
            lance.LanceDataset.commit(self.uri, operation, read_version=read_version, **self.store.lance_options())
            return sum(len(part.keys) for part in clean)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """An exclusive lock shared by every process on this machine that writes this table.

        fcntl locks do not reach other machines (for object storage the lock file is in this
        machine's folder for the store): two machines writing one table at once may both append a
        key; lookups then take its first row, so results stay right and only space is lost.
        """
        lock_path = self.store.root / "locks" / f"{self.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _present(self, dataset, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` that the table holds."""
        if dataset is None:
            self._index = KeyIndex()
            return set()
        self._index.refresh(dataset)
        wanted = self._index.candidates(keys)
        if not len(wanted):
            return set()
        stored = dataset.take(wanted.tolist(), columns=["key"]).column("key").to_pylist()
        return set(stored) & set(keys)

    def compact(self) -> None:
        """Merge the small fragments that many appends leave behind, and drop the files that only
        versions older than an hour still reference (no reader keeps a cache version that long)."""
        dataset = self.dataset()
        if dataset is not None and len(dataset.get_fragments()) > COMPACT_AFTER_FRAGMENTS:
            dataset.optimize.compact_files()
            dataset.cleanup_old_versions(older_than=timedelta(hours=1))

    def count(self) -> int:
        dataset = self.dataset()
        return 0 if dataset is None else dataset.count_rows()


class KeyIndex:
    """Where each key of a cache table is: 64-bit hashes of the keys, sorted, with their row offsets.

    Written by hand because Lance's scalar indices must be rebuilt after appends, and a Python
    dict of a million 64-character keys costs about 150 MB where these two arrays cost 16 bytes a
    row, so a cached run's memory stays flat as the collection grows. Kept up to date incrementally
    (only fragments appended since the last refresh are read; a compaction rebuilds it). A hash
    match only nominates a row: callers confirm it against the stored key.
    """

    def __init__(self):
        self.hashes = np.empty(0, np.int64)
        self.offsets = np.empty(0, np.int64)
        self.fragment_ids: list[int] = []
        self.rows = 0

    def refresh(self, dataset) -> None:
        fragments = dataset.get_fragments()
        ids = [fragment.fragment_id for fragment in fragments]
        if ids[: len(self.fragment_ids)] != self.fragment_ids:
            self.__init__()  # compacted: the rows moved
        for fragment in fragments[len(self.fragment_ids) :]:
            keys = fragment.to_table(columns=["key"]).column("key").to_pylist()
            self._insert(key_hashes(keys), np.arange(self.rows, self.rows + len(keys), dtype=np.int64))
            self.rows += len(keys)
            self.fragment_ids.append(fragment.fragment_id)

    def _insert(self, hashes: np.ndarray, offsets: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        hashes, offsets = hashes[order], offsets[order]
        at = np.searchsorted(self.hashes, hashes, side="right")
        self.hashes = np.insert(self.hashes, at, hashes)
        self.offsets = np.insert(self.offsets, at, offsets)

    def candidates(self, keys: Sequence[str]) -> np.ndarray:
        """Sorted row offsets whose key hash equals one of ``keys``' hashes."""
        wanted = key_hashes(keys)
        left = np.searchsorted(self.hashes, wanted, side="left")
        right = np.searchsorted(self.hashes, wanted, side="right")
        hits = [self.offsets[a:b] for a, b in zip(left, right) if b > a]
        return np.unique(np.concatenate(hits)) if hits else np.empty(0, np.int64)


def entries_table(cache_type: type[KeyedCache], keys: Sequence[str], values: Sequence) -> pa.Table:
    """The rows of a cache table of type ``cache_type``: ``key`` and the encoded values."""
    return pa.table({"key": pa.array(list(keys), pa.string()), cache_type.value_column: cache_type.encode(values)})


def key_hashes(keys: Sequence[str]) -> np.ndarray:
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little", signed=True) for k in keys),
        np.int64,
        count=len(keys),
    )


def _committable(written: Sequence[WrittenFragments], present: set[str]):
    """(fragments that add only new keys, each once; the others) of ``written``, in order."""
    clean, rest, taken = [], [], set(present)
    for part in written:
        new = set(part.keys)
        if len(new) == len(part.keys) and taken.isdisjoint(new):
            clean.append(part)
            taken.update(new)
        else:
            rest.append(part)
    return clean, rest


def _first_new(keys: Sequence[str], present: set[str]) -> list[int]:
    """Positions of the keys that are not in ``present`` and not repeated earlier in ``keys``."""
    keep, taken = [], set()
    for position, key in enumerate(keys):
        if key not in present and key not in taken:
            taken.add(key)
            keep.append(position)
    return keep


class EmbeddingCache(KeyedCache):
    """float32 vectors of one width (one table per model and preprocessing)."""

    value_column = "vector"

    @staticmethod
    def encode(values: Sequence) -> pa.Array:
        vectors = np.ascontiguousarray(
            np.stack(list(values)) if not isinstance(values, np.ndarray) else values, np.float32
        )
        return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])

    @staticmethod
    def decode(column: pa.Array) -> list:
        return list(column.values.to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size))


class RecordCache(KeyedCache):
    """Small JSON documents: detections, captions, LLM answers."""

    @staticmethod
    def encode(values: Sequence) -> pa.Array:
        return pa.array([json.dumps(v, ensure_ascii=False) for v in values], pa.string())

    @staticmethod
    def decode(column: pa.Array) -> list:
        return [json.loads(v) for v in column.to_pylist()]


@dataclass(frozen=True)
class WrittenFragments:
    """Data files written for a cache table but not committed: invisible until :meth:`KeyedCache.commit`."""

    fragments: list  # lance.fragment.FragmentMetadata
    schema: pa.Schema
    keys: list[str]
    values: list  # kept so that entries of a fragment that cannot be committed are appended as rows


@dataclass(frozen=True)
class FragmentWriter:
    """Writes a cache table's entries as Lance data files from another process (a Ray worker).

    ``node_id``: the Ray node whose disk holds a local store (None for object storage, which
    every node reaches); on another node :meth:`reaches_store` is False and the values travel
    back to the driver, which writes them.
    """

    cache_type: type
    uri: str
    storage_options: dict
    node_id: str | None = None

    def reaches_store(self) -> bool:
        if self.node_id is None:
            return True
        import ray

        return ray.get_runtime_context().get_node_id() == self.node_id

    def write(self, keys: Sequence[str], values: Sequence) -> WrittenFragments:
        from lance.fragment import write_fragments

        rows = entries_table(self.cache_type, keys, values)
        options = {"storage_options": self.storage_options} if self.storage_options else {}
        fragments = write_fragments(rows, self.uri, schema=rows.schema, **options)
        return WrittenFragments(list(fragments), rows.schema, list(keys), list(values))
