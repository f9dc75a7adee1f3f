"""Per-image model jobs (detection, captioning) over a collection, cached and resumable.

The same data path as embedding, for models whose output is a small record rather than a vector:

1. read + hash every file of a chunk (threads);
2. look the hashes up in the job's :class:`RecordCache` (key: model, preprocessing, settings);
3. decode + preprocess only the misses in DataLoader worker processes (decoded size kept, so
   boxes can be mapped back to pixels of the upright image);
4. run the model per batch, append new records to the cache every ``flush_every`` images;
5. yield one :class:`ImageResult` per path, in input order (unreadable files as errors).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from iconograph.decode import DecodeError, content_hash, decode_bytes, one_line, read_bytes
from iconograph.embed import DecodeDataset, default_workers, hash_files
from iconograph.progress import progress_bar
from iconograph.record_cache import RecordCache
from iconograph.store import Store


@dataclass(frozen=True)
class ImageResult:
    path: str
    value: dict | None
    error: str | None = None
    cached: bool = False


@dataclass
class JobStats:
    computed: int = 0
    cached: int = 0
    failed: int = 0
    extra: dict = field(default_factory=dict)


class ImageJob(Protocol):
    device: str

    @property
    def cache_name(self) -> str:
        """Table name that identifies model, preprocessing and settings."""

    def make_preprocess(self) -> Callable:
        """RGB PIL image -> CHW tensor; runs in worker processes."""

    def run_batch(self, pixels, sizes: Sequence[tuple[int, int]]) -> list[dict]:
        """One JSON-serialisable record per image of the batch; sizes are (width, height)."""


@dataclass
class SizedBatch:
    positions: list[int]
    hashes: list[str | None]
    errors: list[str | None]
    sizes: list[tuple[int, int] | None]
    pixels: object  # torch.Tensor of the valid images, in order (None when none is valid)


class SizedDecodeDataset(DecodeDataset):
    """Like the embedding loader's dataset, and also returns the decoded (upright) image size."""

    def __getitem__(self, position: int):
        try:
            data = read_bytes(self.paths[position])
            image = decode_bytes(data, self.max_pixels)
        except DecodeError as exc:
            return position, None, None, str(exc), None
        try:
            return position, self.preprocess(image), content_hash(data), None, image.size
        except Exception as exc:  # a model-specific transform failing on one odd image
            return position, None, None, f"preprocessing failed: {one_line(exc)}", None


def collate_sized(samples) -> SizedBatch:
    import torch

    tensors = [s[1] for s in samples if s[1] is not None]
    return SizedBatch(
        [s[0] for s in samples],
        [s[2] for s in samples],
        [s[3] for s in samples],
        [s[4] for s in samples],
        torch.stack(tensors) if tensors else None,
    )


def make_sized_loader(paths: Sequence[str], preprocess, batch_size: int, workers: int, max_pixels, device: str):
    import torch
    from torch.utils.data import DataLoader

    from iconograph.backends.base import set_torch_threads
    from iconograph.embed import _init_worker, _quiet_fork_warning

    set_torch_threads()
    _quiet_fork_warning()
    # the forked workers only decode images and never touch the Lance cache
    warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)
    workers = min(workers, max(0, len(paths) // max(1, batch_size)))  # tiny jobs: no process start-up
    return DataLoader(
        SizedDecodeDataset(paths, preprocess, max_pixels),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_sized,
        worker_init_fn=_init_worker if workers else None,
        prefetch_factor=4 if workers else None,
        pin_memory=device.startswith("cuda") and torch.cuda.is_available(),
    )


class ImageJobRunner:
    """Runs an :class:`ImageJob` over paths through the cache in ``store``."""

    def __init__(
        self,
        job: ImageJob,
        *,
        store: Store | str | None = None,
        use_cache: bool = True,
        batch_size: int = 8,
        workers: int | None = None,
        chunk_size: int = 1024,
        flush_every: int = 64,
        max_pixels: int | None = None,
        progress: bool | None = None,
        description: str = "processing images",
    ):
        self.job = job
        self.store = store if isinstance(store, Store) else Store(store)
        self.cache = RecordCache(self.store, job.cache_name) if use_cache else None
        self.batch_size = batch_size
        self.workers = default_workers() if workers is None else workers
        self.chunk_size = chunk_size
        self.flush_every = flush_every
        self.max_pixels = max_pixels
        self.progress = progress
        self.description = description
        self.stats = JobStats()

    def run(self, paths: Iterable[str]) -> Iterator[ImageResult]:
        paths = [str(p) for p in paths]
        with progress_bar(len(paths), self.description, self.progress) as advance:
            for start in range(0, len(paths), self.chunk_size):
                for result in self._run_chunk(paths[start : start + self.chunk_size], advance):
                    self.stats.failed += result.error is not None
                    yield result
        if self.cache is not None:
            self.cache.compact()

    def _run_chunk(self, paths: list[str], advance) -> list[ImageResult]:
        hashes, errors = hash_files(paths)
        known = self.cache.lookup([h for h in hashes if h]) if self.cache else {}
        values: list[dict | None] = [known.get(h) if h else None for h in hashes]
        cached = [v is not None for v in values]
        self.stats.cached += sum(cached)
        advance(sum(cached) + sum(e is not None for e in errors))
        todo: dict[str, list[int]] = {}  # identical files are processed once
        for i, (h, v) in enumerate(zip(hashes, values)):
            if h and v is None:
                todo.setdefault(h, []).append(i)
        jobs = [(ids, paths[ids[0]]) for ids in todo.values()]
        for ids, value, error in self._compute(jobs, advance):
            for i in ids:
                values[i], errors[i] = value, error
        return [ImageResult(p, v, e, c) for p, v, e, c in zip(paths, values, errors, cached)]

    def _compute(self, jobs: list[tuple[list[int], str]], advance):
        if not jobs:
            return
        loader = make_sized_loader(
            [path for _, path in jobs],
            self.job.make_preprocess(),
            self.batch_size,
            self.workers,
            self.max_pixels,
            self.job.device,
        )
        pending: dict[str, dict] = {}
        try:
            for batch in loader:
                valid_sizes = [s for s, e in zip(batch.sizes, batch.errors) if e is None]
                outputs = iter(self.job.run_batch(batch.pixels, valid_sizes) if valid_sizes else [])
                for position, digest, error in zip(batch.positions, batch.hashes, batch.errors):
                    ids = jobs[position][0]
                    if error is None:
                        value = next(outputs)
                        pending[digest] = value
                        self.stats.computed += 1
                        yield ids, value, None
                    else:
                        yield ids, None, error
                    advance(len(ids))
                if len(pending) >= self.flush_every:
                    self._flush(pending)
        finally:
            self._flush(pending)

    def _flush(self, pending: dict[str, dict]) -> None:
        if self.cache is not None and pending:
            self.cache.add(dict(pending))
        pending.clear()
