"""The data path every per-image model job shares: embedding, detection, captioning.

Per chunk of paths, in input order:

1. read + hash every file in a thread pool (cheap, I/O bound);
2. look the hashes up in the job's cache (keyed by model, preprocessing and settings);
3. decode + preprocess only the misses in DataLoader worker processes, while the model runs the
   batches (the upright decoded size travels along, so boxes map back to pixels); a job that
   defines ``decode_min_size()`` has large images decoded at reduced scale, their shorter edge
   never below that size (``reading.decode``); the others decode exactly;
4. append new results to the cache every ``flush_every`` images, or as soon as ``flush_seconds``
   have passed since the last append (one atomic Lance commit each; a key already in the table is
   never appended again);
5. yield one :class:`ImageResult` per path; unreadable files are error results, not crashes.

A run killed at any point loses at most the unflushed results (``flush_every`` images or
``flush_seconds`` of work); the next run computes only those.

With ``engine="ray"`` steps 3 and 4 run on a Ray cluster (:mod:`iconograph.engine.ray_engine`):
the same decoding, the same batches and the same ``run_batch``, so the results are the same.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from iconograph.engine.progress import progress_bar
from iconograph.engine.store import KeyedCache, RecordCache, Store
from iconograph.errors import OptionError
from iconograph.reading.decode import DecodeError, content_hash, decode_bytes, one_line, read_bytes

DEFAULT_FLUSH_SECONDS = 10.0


@dataclass(frozen=True)
class ImageResult:
    path: str
    value: Any  # what the job returned for this image (a vector, a dict), None on error
    error: str | None = None
    cached: bool = False
    content_hash: str | None = None


@dataclass
class JobStats:
    computed: int = 0
    cached: int = 0
    failed: int = 0


class ImageJob(Protocol):
    device: str

    def make_preprocess(self) -> Callable:
        """RGB PIL image -> CHW tensor; runs in worker processes."""

    def run_batch(self, pixels, sizes: Sequence[tuple[int, int]]) -> Sequence:
        """One cacheable value per image of the batch; sizes are the decoded (width, height)."""

    # Optional: def decode_min_size(self) -> int | None, the shorter edge large images may be
    # decoded down to (a job without it, or returning None, gets exact full-size decoding).
    # Optional: def item_key(self, path, content_hash) -> str, the cache key of one image when its
    # result depends on more than its content (segment's per-image box prompts); the job's
    # run_batch then takes a third argument, the keys of the batch's images, in order.
    # Optional (with item_key): def item_source(self, item) -> str, the file an item is read from
    # when items are not file paths (crops: several items per file), and
    # def make_item_preprocess(self) -> Callable[[item, image], tensor], used instead of
    # make_preprocess (it runs in worker processes, so it must pickle).


def default_flush_seconds() -> float:
    """``$ICONOGRAPH_FLUSH_SECONDS``, else 10: how much work a killed run may lose at most."""
    value = os.environ.get("ICONOGRAPH_FLUSH_SECONDS")
    try:
        return DEFAULT_FLUSH_SECONDS if value is None else max(0.0, float(value))
    except ValueError:
        raise OptionError(f"ICONOGRAPH_FLUSH_SECONDS must be a number of seconds, not {value!r}") from None


def default_workers() -> int:
    """Decode workers: one per spare core (at least one), capped at 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


class ImageJobRunner:
    """Runs an :class:`ImageJob` over paths through its cache.

    The cache is ``cache`` when given, else a :class:`RecordCache` named ``job.cache_name`` in
    ``store`` (none with ``use_cache=False``). A job may define ``before_compute(misses)``, called
    before a chunk's uncached images are computed.
    """

    def __init__(
        self,
        job: ImageJob,
        *,
        cache: KeyedCache | None = None,
        store: Store | str | None = None,
        use_cache: bool = True,
        batch_size: int = 8,
        workers: int | None = None,
        chunk_size: int = 1024,
        flush_every: int = 64,
        flush_seconds: float | None = None,
        max_pixels: int | None = None,
        progress: bool | None = None,
        description: str = "processing images",
        engine: str | None = None,
        ray_address: str | None = None,
        actors: int | None = None,
    ):
        from iconograph.engine.ray_engine import RaySettings, resolve_engine

        self.engine = resolve_engine(engine)
        self.ray = RaySettings(ray_address, actors)
        self.job = job
        if cache is None and use_cache:
            cache = RecordCache(store if isinstance(store, Store) else Store(store), job.cache_name)
        self.cache = cache if use_cache else None
        self.batch_size = batch_size
        self.workers = default_workers() if workers is None else workers
        self.chunk_size = chunk_size
        self.flush_every = flush_every
        self.flush_seconds = default_flush_seconds() if flush_seconds is None else flush_seconds
        self._last_flush = time.monotonic()
        self.max_pixels = max_pixels
        self.progress = progress
        self.description = description
        self.stats = JobStats()

    def run(self, paths: Iterable[str]) -> Iterator[ImageResult]:
        for chunk in self.run_chunks(paths):
            yield from chunk

    def run_chunks(self, paths: Iterable[str]) -> Iterator[list[ImageResult]]:
        """Results chunk by chunk, in input order, so a million paths never sit in memory."""
        paths = [str(p) for p in paths]
        if self.engine == "ray":
            yield from self._run_chunks_ray(paths)
            return
        with progress_bar(len(paths), self.description, self.progress) as advance:
            for start in range(0, len(paths), self.chunk_size):
                chunk = self._run_chunk(paths[start : start + self.chunk_size], advance)
                self.stats.failed += sum(r.error is not None for r in chunk)
                yield chunk
        if self.cache is not None:
            self.cache.compact()

    def _run_chunk(self, paths: list[str], advance) -> list[ImageResult]:
        hashes, errors = hash_files(self._sources(paths))
        keys = [self._key(path, h) for path, h in zip(paths, hashes)]
        known = self.cache.lookup([k for k in keys if k]) if self.cache is not None else {}
        values = [known.get(k) if k else None for k in keys]
        cached = [k in known for k in keys]
        self.stats.cached += sum(cached)
        advance(sum(cached) + sum(e is not None for e in errors))
        todo: dict[str, list[int]] = {}  # identical files (with identical prompts) are computed once
        for i, (k, is_cached) in enumerate(zip(keys, cached)):
            if k and not is_cached:
                todo.setdefault(k, []).append(i)
        for ids, value, error in self._compute([(ids, paths[ids[0]]) for ids in todo.values()], advance):
            for i in ids:
                values[i], errors[i] = value, error
        return [ImageResult(*fields) for fields in zip(paths, values, errors, cached, hashes)]

    def _compute(self, jobs: list[tuple[list[int], str]], advance) -> Iterator[tuple[list[int], Any, str | None]]:
        """Decode, preprocess and run ``jobs`` (index group, path); one result per job."""
        if not jobs:
            return
        if hasattr(self.job, "before_compute"):
            self.job.before_compute(len(jobs))
        items = [path for _, path in jobs]
        per_item = hasattr(self.job, "make_item_preprocess")
        loader = make_loader(
            self._sources(items),
            self.job.make_item_preprocess() if per_item else self.job.make_preprocess(),
            self.batch_size,
            self.workers,
            self.max_pixels,
            self.job.device,
            min_size=self.job.decode_min_size() if hasattr(self.job, "decode_min_size") else None,
            items=items if per_item else None,
        )
        pending_keys: list[str] = []
        pending_values: list = []
        try:
            for batch in start_workers(loader):
                # the content hash of the bytes decoded (the file may have changed since it was hashed)
                keys = [self._key(jobs[p][1], h) for p, h in zip(batch.positions, batch.hashes)]
                valid_sizes = [s for s, e in zip(batch.sizes, batch.errors) if e is None]
                valid_keys = [k for k, e in zip(keys, batch.errors) if e is None]
                outputs = iter(self._run_batch(batch.pixels, valid_sizes, valid_keys) if valid_sizes else [])
                for position, key, error in zip(batch.positions, keys, batch.errors):
                    ids = jobs[position][0]
                    if error is None:
                        value = next(outputs)
                        pending_keys.append(key)
                        pending_values.append(value)
                        self.stats.computed += 1
                        yield ids, value, None
                    else:
                        yield ids, None, error
                    advance(len(ids))
                if self._flush_due(len(pending_keys)):
                    self._flush(pending_keys, pending_values)
        finally:
            self._flush(pending_keys, pending_values)

    def _sources(self, items: list[str]) -> list[str]:
        """The files the items are read from (the items themselves, unless the job says otherwise)."""
        source = getattr(self.job, "item_source", None)
        return [source(item) for item in items] if source is not None else items

    def _key(self, path: str, content_hash: str | None) -> str | None:
        if content_hash is None or not hasattr(self.job, "item_key"):
            return content_hash
        return self.job.item_key(path, content_hash)

    def _run_batch(self, pixels, sizes, keys):
        if hasattr(self.job, "item_key"):
            return self.job.run_batch(pixels, sizes, keys)
        return self.job.run_batch(pixels, sizes)

    def _run_chunks_ray(self, paths: list[str]) -> Iterator[list[ImageResult]]:
        """:meth:`run_chunks` with the misses of every chunk computed in one Ray Data pipeline.

        Chunks are planned as the local engine plans them (hash, look up, one job per distinct
        new file, batches of ``batch_size`` jobs); a file seen in an earlier chunk counts as
        cached, as it would be locally after that chunk's flush (without a cache it is computed
        again, as locally). Results stream back in order and each chunk is yielded once complete.
        """
        from iconograph.engine.ray_engine import run_pipeline

        if hasattr(self.job, "item_key"):
            raise OptionError(
                "--engine ray runs jobs cached by content only; this job keys its cache per image prompts or crops"
            )
        with progress_bar(len(paths), self.description, self.progress) as advance:
            chunks, rows, jobs, first_misses = self._plan_ray(paths, advance)
            if rows and hasattr(self.job, "before_compute"):
                self.job.before_compute(first_misses)
            rows_left = [0] * len(chunks)
            for row in rows:
                rows_left[jobs[row[0][0]][0]] += 1
            pending_keys: list[str] = []
            pending_values: list = []
            pending_written: list = []  # results the actors wrote as fragments, to commit
            rows_seen: set[int] = set()
            done = 0
            results = (
                run_pipeline(
                    rows,
                    self.job,
                    self.ray,
                    max_pixels=self.max_pixels,
                    min_size=self.job.decode_min_size() if hasattr(self.job, "decode_min_size") else None,
                    cache=self.cache,
                )
                if rows
                else iter(())
            )
            try:
                while done < len(chunks):
                    if rows_left[done] == 0:
                        self._flush(pending_keys, pending_values, pending_written)
                        chunk = chunks[done]
                        done += 1
                        self.stats.failed += sum(e is not None for e in chunk["errors"])
                        yield [
                            ImageResult(*f)
                            for f in zip(*(chunk[k] for k in ("paths", "values", "errors", "cached", "hashes")))
                        ]
                        continue
                    row, positions, hashes, values, errors, written = next(results)
                    if row in rows_seen:  # a retried batch delivered twice: its images count once
                        continue
                    rows_seen.add(row)
                    if written is not None:
                        pending_written.append(written)
                    for position, digest, value, error in zip(positions, hashes, values, errors):
                        chunk_index, ids, later = jobs[position]
                        chunk = chunks[chunk_index]
                        for i in ids:
                            chunk["values"][i], chunk["errors"][i] = value, error
                        for other, i in later:  # the same file in later chunks: "cached" there
                            chunks[other]["values"][i], chunks[other]["errors"][i] = value, error
                            if error is not None:  # locally a failure is not cached: computed again
                                chunks[other]["cached"][i] = False
                                self.stats.cached -= 1
                        if error is None:
                            if written is None:
                                pending_keys.append(digest)
                                pending_values.append(value)
                            self.stats.computed += 1
                        advance(len(ids) + len(later))
                    rows_left[chunk_index] -= 1
                    if self._flush_due(len(pending_keys) + sum(len(w.keys) for w in pending_written)):
                        self._flush(pending_keys, pending_values, pending_written)
            finally:
                self._flush(pending_keys, pending_values, pending_written)
        if self.cache is not None:
            self.cache.compact()

    def _plan_ray(self, paths: list[str], advance):
        """Per chunk its lists (paths, values, errors, cached, hashes); the batches to compute, as
        (job number, path) lists; per job number (chunk, positions, later (chunk, position)s)."""
        chunks: list[dict] = []
        rows: list[list[tuple[int, str]]] = []
        jobs: list[tuple[int, list[int], list[tuple[int, int]]]] = []
        first_job: dict[str, int] = {}  # with a cache: content hash -> the job computing it
        first_misses = 0
        for start in range(0, len(paths), self.chunk_size):
            chunk_paths = paths[start : start + self.chunk_size]
            hashes, errors = hash_files(chunk_paths)
            known = self.cache.lookup([h for h in hashes if h]) if self.cache is not None else {}
            values = [known.get(h) if h else None for h in hashes]
            cached = [h in known for h in hashes]
            todo: dict[str, list[int]] = {}
            for i, (h, is_cached) in enumerate(zip(hashes, cached)):
                if not h or is_cached:
                    continue
                if h in first_job:
                    jobs[first_job[h]][2].append((len(chunks), i))
                    cached[i] = True
                else:
                    todo.setdefault(h, []).append(i)
            self.stats.cached += sum(cached)
            advance(sum(c and h in known for c, h in zip(cached, hashes)) + sum(e is not None for e in errors))
            new_jobs = []
            for h, ids in todo.items():
                if self.cache is not None:
                    first_job[h] = len(jobs)
                new_jobs.append((len(jobs), chunk_paths[ids[0]]))
                jobs.append((len(chunks), ids, []))
            first_misses = first_misses or len(new_jobs)
            rows.extend(new_jobs[i : i + self.batch_size] for i in range(0, len(new_jobs), self.batch_size))
            chunks.append(
                {"paths": chunk_paths, "values": values, "errors": errors, "cached": cached, "hashes": hashes}
            )
        return chunks, rows, jobs, first_misses

    def _flush_due(self, pending: int) -> bool:
        """Enough new results to append, or ``flush_seconds`` have passed since the last append."""
        overdue = time.monotonic() - self._last_flush >= self.flush_seconds
        return pending >= self.flush_every or (pending > 0 and overdue)

    def _flush(self, keys: list[str], values: list, written: list | None = None) -> None:
        """Append ``keys``/``values`` and commit the ``written`` fragments; then empty the lists."""
        if self.cache is not None and keys:
            self.cache.add(keys, values)
        if self.cache is not None and written:
            self.cache.commit(written)
        keys.clear()
        values.clear()
        if written:
            written.clear()
        self._last_flush = time.monotonic()


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
    sizes: list[tuple[int, int] | None]
    pixels: object  # torch.Tensor of the valid images, in order (None when none is valid)


class DecodeDataset:
    """Map-style dataset: position -> (position, tensor | None, content hash, error, (w, h)).

    With ``items`` (one per path), ``preprocess`` is called as ``preprocess(item, image)``."""

    def __init__(
        self,
        paths: Sequence[str],
        preprocess,
        max_pixels: int | None = None,
        min_size: int | None = None,
        items: Sequence[str] | None = None,
    ):
        self.paths = list(paths)
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.min_size = min_size  # None: exact full-size decoding
        self.items = None if items is None else list(items)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        try:
            data = read_bytes(self.paths[position])
            image = decode_bytes(data, self.max_pixels, self.min_size)
        except DecodeError as exc:
            return position, None, None, str(exc), None
        try:
            pixels = self.preprocess(image) if self.items is None else self.preprocess(self.items[position], image)
            return position, pixels, content_hash(data), None, image.size
        except Exception as exc:  # a model-specific transform failing on one odd image
            return position, None, None, f"preprocessing failed: {one_line(exc)}", None


def collate(samples) -> Batch:
    import torch

    tensors = [s[1] for s in samples if s[1] is not None]
    return Batch(
        [s[0] for s in samples],
        [s[2] for s in samples],
        [s[3] for s in samples],
        [s[4] for s in samples],
        torch.stack(tensors) if tensors else None,
    )


def _init_worker(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # decoding workers must not compete with the model's threads


def start_workers(loader) -> Iterator[Batch]:
    """``iter(loader)``, which forks the decoding workers, without Lance's and LanceDB's fork warnings.

    The workers only decode images and never touch Lance or LanceDB, so the warnings do not apply.
    Lance warns in this process just before the fork; LanceDB warns in the child just after it, and
    the child inherits the filters in force at the fork. So they are silenced only for that moment.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)
        return iter(loader)


def make_loader(
    paths: Sequence[str],
    preprocess,
    batch_size: int,
    workers: int,
    max_pixels: int | None,
    device: str,
    min_size: int | None = None,
    items: Sequence[str] | None = None,
) -> Iterable[Batch]:
    import torch
    from torch.utils.data import DataLoader

    from iconograph.backends.base import set_torch_threads

    set_torch_threads()
    workers = min(workers, max(0, len(paths) // max(1, batch_size)))  # tiny jobs: no process start-up
    return DataLoader(
        DecodeDataset(paths, preprocess, max_pixels, min_size, items),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_init_worker if workers else None,
        prefetch_factor=4 if workers else None,
        pin_memory=device.startswith("cuda") and torch.cuda.is_available(),
    )
