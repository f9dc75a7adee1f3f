"""Batched image and text embeddings with a persistent, content-addressed cache.

Data path for images, per chunk of paths (in input order):

1. read + hash every file in a thread pool (cheap, I/O bound);
2. look the hashes up in the cache (key: model fingerprint, preprocessing fingerprint, content);
3. decode + preprocess only the misses, in worker processes, while the model runs batches;
4. append new vectors to the cache every ``flush_every`` images (one atomic Lance commit each).

A run killed at any point loses at most the unflushed batch; the next run recomputes only that.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from iconograph.backends import Backend, Scoring, load_model
from iconograph.decode import DecodeError, content_hash, decode_bytes, one_line, read_bytes
from iconograph.progress import progress_bar
from iconograph.runtime import AUTO_MIN_IMAGES, RUNTIMES, OnnxImageEncoder, onnx_path
from iconograph.store import Store


@dataclass
class ImageEmbeddings:
    """Embeddings for a list of paths, in order; rows of failed images are zero."""

    paths: list[str]
    vectors: np.ndarray
    errors: list[str | None]
    hashes: list[str | None]
    computed: int = 0
    cached: int = 0

    @property
    def ok(self) -> np.ndarray:
        return np.array([e is None for e in self.errors], dtype=bool)

    @classmethod
    def concatenate(cls, parts: Sequence[ImageEmbeddings], dim: int = 0) -> ImageEmbeddings:
        dim = max([dim] + [part.vectors.shape[1] for part in parts])
        matrices = [
            part.vectors if part.vectors.shape[1] == dim else np.zeros((len(part.paths), dim), np.float32)
            for part in parts
        ]
        return cls(
            [p for part in parts for p in part.paths],
            np.concatenate(matrices) if matrices else np.zeros((0, dim), np.float32),
            [e for part in parts for e in part.errors],
            [h for part in parts for h in part.hashes],
            sum(part.computed for part in parts),
            sum(part.cached for part in parts),
        )


@dataclass
class EmbedStats:
    computed: int = 0
    cached: int = 0
    failed: int = 0
    texts_computed: int = 0
    extra: dict = field(default_factory=dict)


def default_workers() -> int:
    """Decode workers: one per spare core (at least one), capped at 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


class Embedder:
    """Embeds images and texts with one model, through the cache in ``store``.

    ``store=None`` uses the default store; ``use_cache=False`` neither reads nor writes it.
    """

    def __init__(
        self,
        model: Backend | str | None = None,
        *,
        store: Store | str | None = None,
        use_cache: bool = True,
        batch_size: int = 32,
        workers: int | None = None,
        device: str | None = None,
        chunk_size: int = 4096,
        flush_every: int = 512,
        max_pixels: int | None = None,
        progress: bool | None = None,
        runtime: str = "auto",
    ):
        self.model = load_model(model, device) if not isinstance(model, Backend) else model
        self.store = store if isinstance(store, Store) else Store(store)
        self.use_cache = use_cache
        self.batch_size = batch_size
        self.workers = default_workers() if workers is None else workers
        self.chunk_size = chunk_size
        self.flush_every = flush_every
        self.max_pixels = max_pixels
        self.progress = progress
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.runtime = runtime
        self.stats = EmbedStats()
        self._onnx = None

    # ---- images -------------------------------------------------------------------------

    @cached_property
    def image_cache(self):
        return self.store.embedding_cache(f"image_{self.model.cache_key}") if self.use_cache else None

    def embed_images(self, paths: Sequence[str]) -> ImageEmbeddings:
        """Embeddings for all ``paths`` at once (see :meth:`iter_images` for streaming)."""
        return ImageEmbeddings.concatenate(list(self.iter_images(paths)), dim=0)

    def iter_images(self, paths: Sequence[str]) -> Iterator[ImageEmbeddings]:
        """Embeddings chunk by chunk, in input order, so a million paths never sit in memory."""
        paths = [str(p) for p in paths]
        with progress_bar(len(paths), "embedding images", self.progress) as advance:
            for start in range(0, len(paths), self.chunk_size):
                chunk = self._embed_chunk(paths[start : start + self.chunk_size], advance)
                self.stats.computed += chunk.computed
                self.stats.cached += chunk.cached
                self.stats.failed += sum(e is not None for e in chunk.errors)
                yield chunk
        if self.image_cache is not None:
            self.image_cache.compact()

    def _embed_chunk(self, paths: list[str], advance) -> ImageEmbeddings:
        hashes, errors = hash_files(paths)
        known = self.image_cache.lookup([h for h in hashes if h]) if self.image_cache else {}
        vectors: list[np.ndarray | None] = [known.get(h) if h else None for h in hashes]
        advance(sum(v is not None for v in vectors) + sum(e is not None for e in errors))
        todo: dict[str, list[int]] = {}  # identical files are embedded once
        for i, (h, v) in enumerate(zip(hashes, vectors)):
            if h and v is None:
                todo.setdefault(h, []).append(i)
        computed = 0
        for index_group, vector, error in self._compute([(ids, paths[ids[0]]) for ids in todo.values()], advance):
            for i in index_group:
                vectors[i], errors[i] = vector, error
            computed += vector is not None
        dim = next((v.shape[0] for v in vectors if v is not None), 0)
        matrix = (
            np.stack([v if v is not None else np.zeros(dim, np.float32) for v in vectors])
            if paths
            else np.zeros((0, dim), np.float32)
        )
        cached = sum(1 for h, v in zip(hashes, vectors) if v is not None and h in known)
        return ImageEmbeddings(paths, matrix.astype(np.float32, copy=False), errors, hashes, computed, cached)

    def _compute(
        self, jobs: list[tuple[list[int], str]], advance
    ) -> Iterator[tuple[list[int], np.ndarray | None, str | None]]:
        """Decode, preprocess and embed ``jobs`` (index group, path); yield one result per job."""
        if not jobs:
            return
        loader = make_loader(
            [path for _, path in jobs],
            self.model.make_preprocess(),
            self.batch_size,
            self.workers,
            self.max_pixels,
            self.model.device,
        )
        pending_keys: list[str] = []
        pending_vectors: list[np.ndarray] = []
        try:
            for batch in loader:
                vectors = self._encode(batch.pixels, len(jobs)).numpy() if batch.valid else np.zeros((0, 0), np.float32)
                row = 0
                for position, digest, error in zip(batch.positions, batch.hashes, batch.errors):
                    ids = jobs[position][0]
                    if error is None:
                        vector = vectors[row]
                        row += 1
                        pending_keys.append(digest)
                        pending_vectors.append(vector)
                        yield ids, vector, None
                    else:
                        yield ids, None, error
                    advance(len(ids))
                if len(pending_keys) >= self.flush_every:
                    self._flush(pending_keys, pending_vectors)
        finally:
            self._flush(pending_keys, pending_vectors)

    def _encode(self, pixels, pending: int):
        """The image tower through ONNX Runtime when chosen and possible, else PyTorch."""
        if self._onnx is None and self._wants_onnx(pixels.shape[1:], pending):
            try:
                self._onnx = OnnxImageEncoder.load_or_export(
                    self.model, tuple(pixels.shape[1:]), self.store.root / "onnx"
                )
            except Exception as exc:  # an architecture the exporter cannot trace: PyTorch still works
                self._onnx = False
                sys.stderr.write(
                    f"iconograph: ONNX Runtime not used for {self.model.spec} ({one_line(exc)[:200]}); using PyTorch\n"
                )
        return self._onnx(pixels) if self._onnx else self.model.encode_images(pixels)

    def _wants_onnx(self, shape, pending: int) -> bool:
        if self._onnx is False or self.runtime == "torch" or self.model.device != "cpu":
            return False
        if self.runtime == "onnx":
            return True
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False
        return onnx_path(self.store.root / "onnx", self.model, tuple(shape)).exists() or pending >= AUTO_MIN_IMAGES

    def _flush(self, keys: list[str], vectors: list[np.ndarray]) -> None:
        if self.image_cache is not None and keys:
            self.image_cache.add(keys, np.stack(vectors))
        keys.clear()
        vectors.clear()

    # ---- texts --------------------------------------------------------------------------

    @cached_property
    def text_cache(self):
        return self.store.embedding_cache(f"text_{self.model.fingerprint}") if self.use_cache else None

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Text embeddings (not normalised), one row per text, cached by the exact string."""
        texts = list(texts)
        known = self.text_cache.lookup(texts) if self.text_cache else {}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        for start in range(0, len(missing), batch_size):
            part = missing[start : start + batch_size]
            vectors = self.model.encode_texts(part).numpy()
            known.update(zip(part, vectors))
            if self.text_cache is not None:
                self.text_cache.add(part, vectors)
        self.stats.texts_computed += len(missing)
        return np.stack([known[t] for t in texts]).astype(np.float32) if texts else np.zeros((0, 0), np.float32)

    def scoring(self) -> Scoring:
        """The model's logit scale (and bias), remembered in the store so cached runs skip loading it."""
        name = f"scoring_{self.model.fingerprint}"
        meta = self.store.read_meta(name) if self.use_cache else None
        if meta is None:
            scoring = self.model.scoring()
            if self.use_cache:
                self.store.write_meta(name, {"logit_scale": scoring.logit_scale, "logit_bias": scoring.logit_bias})
            return scoring
        return Scoring(meta["logit_scale"], meta["logit_bias"])


# ---- hashing and decoding ---------------------------------------------------------------


def hash_files(paths: Sequence[str], threads: int = 8) -> tuple[list[str | None], list[str | None]]:
    """Content hashes, or a one-line error for files that cannot be read."""

    def one(path: str) -> tuple[str | None, str | None]:
        try:
            data = read_bytes(path)
        except DecodeError as exc:
            return None, str(exc)
        if not data:
            return None, "empty file (0 bytes)"
        return content_hash(data), None

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, paths))
    return [h for h, _ in results], [e for _, e in results]


@dataclass
class Batch:
    positions: list[int]
    hashes: list[str | None]
    errors: list[str | None]
    pixels: object  # torch.Tensor of the valid images, in order
    valid: int


class DecodeDataset:
    """Map-style dataset: position -> (position, tensor | None, content hash, error)."""

    def __init__(self, paths: Sequence[str], preprocess, max_pixels: int | None = None):
        self.paths = list(paths)
        self.preprocess = preprocess
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        try:
            data = read_bytes(self.paths[position])
            image = decode_bytes(data, self.max_pixels)
        except DecodeError as exc:
            return position, None, None, str(exc)
        try:
            return position, self.preprocess(image), content_hash(data), None
        except Exception as exc:  # a model-specific transform failing on one odd image
            return position, None, None, f"preprocessing failed: {one_line(exc)}"


def collate(samples) -> Batch:
    import torch

    tensors = [s[1] for s in samples if s[1] is not None]
    return Batch(
        [s[0] for s in samples],
        [s[2] for s in samples],
        [s[3] for s in samples],
        torch.stack(tensors) if tensors else None,
        len(tensors),
    )


def _init_worker(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # decoding workers must not compete with the model's threads


def _quiet_fork_warning() -> None:
    # Decode workers are forked after LanceDB has started its runtime. They only decode images
    # and never touch LanceDB, so its "fork support is experimental" warning does not apply.
    import warnings

    warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)


def make_loader(
    paths: Sequence[str], preprocess, batch_size: int, workers: int, max_pixels: int | None, device: str
) -> Iterable[Batch]:
    import torch
    from torch.utils.data import DataLoader

    from iconograph.backends.base import set_torch_threads

    set_torch_threads()
    _quiet_fork_warning()
    workers = min(workers, max(0, len(paths) // max(1, batch_size)))  # tiny jobs: no process start-up
    return DataLoader(
        DecodeDataset(paths, preprocess, max_pixels),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_init_worker if workers else None,
        prefetch_factor=4 if workers else None,
        pin_memory=device.startswith("cuda") and torch.cuda.is_available(),
    )


def write_embeddings(result: ImageEmbeddings, path) -> None:
    """Write vectors as ``.npz`` (paths, vectors, errors), ``.parquet`` or ``.jsonl``, atomically."""
    import io
    import json
    from pathlib import Path

    from iconograph.io import atomic_open, atomic_write_bytes

    path = Path(path)
    suffix = path.suffix.lower()
    errors = ["" if e is None else e for e in result.errors]
    if suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, paths=np.array(result.paths), vectors=result.vectors, errors=np.array(errors))
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = result.vectors.shape[1]
        table = pa.table(
            {
                "path": result.paths,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(result.vectors.reshape(-1)), dim),
                "error": [e or None for e in errors],
            }
        )
        with atomic_open(path, "wb") as handle:
            pq.write_table(table, handle)
    elif suffix in (".jsonl", ".ndjson"):
        with atomic_open(path) as handle:
            for p, v, e in zip(result.paths, result.vectors, result.errors):
                handle.write(json.dumps({"path": p, "vector": None if e else v.tolist(), "error": e}) + "\n")
    else:
        raise ValueError(f"{path}: embeddings can be written as .npz, .parquet or .jsonl")
