"""Batched image and text embeddings with a persistent, content-addressed cache.

Images go through the shared per-image data path (:mod:`iconograph.engine.jobs`): hash, look up,
decode only the misses in worker processes, embed in batches, append to the cache. The cache is
keyed by (model fingerprint, preprocessing fingerprint, image content hash), texts by (model
fingerprint, text). On a CPU the image tower may run through ONNX Runtime (:mod:`iconograph.engine.onnx_runtime`).

By default an image much larger than the model's input is decoded at reduced scale (its shorter
edge never below twice the model's resize target; see :mod:`iconograph.reading.decode`), which
makes camera-size JPEGs several times faster and changes the model input only slightly;
``exact_decode=True`` decodes at full size, bit-identical to the reference pipelines. The two
are cached under different keys (:meth:`Backend.image_cache_key`), so they never mix.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from iconograph.backends import DEFAULT_MODEL, Backend, Scoring, load_model
from iconograph.engine.jobs import ImageJobRunner, ImageResult, default_workers
from iconograph.engine.onnx_runtime import AUTO_MIN_IMAGES, RUNTIMES, OnnxImageEncoder, onnx_path
from iconograph.engine.runs import RunStats
from iconograph.engine.store import Store
from iconograph.errors import OptionError
from iconograph.reading.decode import content_hash, decode_bytes, one_line


@dataclass
class ImageEmbeddings:
    """Embeddings for a list of paths, in order; rows of failed images are zero."""

    paths: list[str]
    vectors: np.ndarray
    errors: list[str | None]
    hashes: list[str | None]
    computed: int = 0
    cached: int = 0
    boxes: list | None = None  # with crops: the [x1, y1, x2, y2] each row was cut from (None: no box)
    crop_keys: list | None = None  # with crops: each row's Crop.key (box, margin, mask; None: no box)

    @property
    def ok(self) -> np.ndarray:
        return np.array([e is None for e in self.errors], dtype=bool)

    @classmethod
    def concatenate(cls, parts: Sequence[ImageEmbeddings]) -> ImageEmbeddings:
        dim = max((part.vectors.shape[1] for part in parts), default=0)  # all-failed chunks have width 0
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
            [b for part in parts for b in part.boxes] if parts and all(p.boxes is not None for p in parts) else None,
            _joined(parts, "crop_keys"),
        )


def _joined(parts: Sequence[ImageEmbeddings], field: str) -> list | None:
    """A per-row list field of every part, joined; None unless every part has it."""
    if not parts or any(getattr(part, field) is None for part in parts):
        return None
    return [value for part in parts for value in getattr(part, field)]


@dataclass
class EmbedStats:
    computed: int = 0
    cached: int = 0
    failed: int = 0
    texts_computed: int = 0


class Embedder:
    """Embeds images and texts with one model, through the cache in ``store``.

    ``store=None`` uses the default store; ``use_cache=False`` neither reads nor writes it.
    ``exact_decode=True`` decodes every image at full size (bit-parity with the reference
    pipelines) instead of reducing large ones to twice the model's input first.
    ``engine="ray"`` computes the images on a Ray cluster (``ray_address``, ``actors``: see
    :class:`~iconograph.engine.ray_engine.RaySettings`), with the same results.
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
        exact_decode: bool = False,
        engine: str | None = None,
        ray_address: str | None = None,
        actors: int | None = None,
    ):
        from iconograph.engine.ray_engine import RaySettings, resolve_engine

        self.engine = resolve_engine(engine)
        self.ray = RaySettings(ray_address, actors)
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
            raise OptionError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.runtime = runtime
        self.exact_decode = exact_decode
        self.stats = EmbedStats()
        self._onnx = None
        self._misses = 0
        self._dim: int | None = None

    # ---- images -------------------------------------------------------------------------

    @cached_property
    def image_cache(self):
        if not self.use_cache:
            return None
        suffix = "_int8" if self.runtime == "onnx-int8" else ""  # int8 vectors differ: never mix them with fp32
        return self.store.embedding_cache(f"image_{self.model.image_cache_key(self.exact_decode)}{suffix}")

    def embed_images(self, paths: Sequence[str]) -> ImageEmbeddings:
        """Embeddings for all ``paths`` at once (see :meth:`iter_images` for streaming); rows of
        images that failed are zero, so ``vectors`` is ``(len(paths), dim)`` even when all failed."""
        result = ImageEmbeddings.concatenate(list(self.iter_images(paths)))
        if result.vectors.shape[1] == 0 and len(result.paths):
            result.vectors = np.zeros((len(result.paths), self.dim), np.float32)
        return result

    @property
    def dim(self) -> int:
        """The width of this model's image embeddings (measured once on a blank image)."""
        if self._dim is None:
            from PIL import Image

            pixels = self.model.make_preprocess()(Image.new("RGB", (64, 64)))
            self._dim = int(self.model.encode_images(pixels[None]).shape[-1])
        return self._dim

    def iter_images(self, paths: Sequence[str]) -> Iterator[ImageEmbeddings]:
        """Embeddings chunk by chunk, in input order, so a million paths never sit in memory."""
        for results in self.runner(self, "embedding images").run_chunks(paths):
            yield self.counted(_to_embeddings(results))

    def runner(self, job, description: str) -> ImageJobRunner:
        """The job runner for ``job`` (this embedder, or a job built on it such as crops) with
        this embedder's cache, batching, workers, progress and engine."""
        return ImageJobRunner(
            job,
            cache=self.image_cache,
            use_cache=self.use_cache,
            batch_size=self.batch_size,
            workers=self.workers,
            chunk_size=self.chunk_size,
            flush_every=self.flush_every,
            max_pixels=self.max_pixels,
            progress=self.progress,
            description=description,
            engine=self.engine,
            ray_address=self.ray.address,
            actors=self.ray.actors,
        )

    def counted(self, chunk: ImageEmbeddings) -> ImageEmbeddings:
        """``chunk``, its computed, cached and failed rows added to :attr:`stats`."""
        self.stats.computed += chunk.computed
        self.stats.cached += chunk.cached
        self.stats.failed += sum(e is not None for e in chunk.errors)
        return chunk

    def embed_bytes(self, data: bytes) -> np.ndarray:
        """One image given as bytes (an upload): through the same cache. Raises ``DecodeError``."""
        digest = content_hash(data)
        known = self.image_cache.lookup([digest]) if self.image_cache is not None else {}
        if digest in known:
            return known[digest]
        pixels = self.model.make_preprocess()(decode_bytes(data, self.max_pixels, self.decode_min_size()))
        vector = self.model.encode_images(pixels[None]).numpy()[0]
        if self.image_cache is not None:
            self.image_cache.add([digest], [vector])
        return vector

    # The ImageJob surface the runner drives:

    @property
    def device(self) -> str:
        return self.model.device

    def make_preprocess(self):
        return self.model.make_preprocess()

    def decode_min_size(self) -> int | None:
        """None (full-size decoding) with ``exact_decode``, else twice the model's resize target."""
        return None if self.exact_decode else self.model.decode_min_size()

    def before_compute(self, misses: int) -> None:
        self._misses = misses

    def for_worker(self):
        """A picklable recipe for this embedder in another process (a Ray actor): the same model
        (loaded again from its spec), runtime and decoding, no cache of its own."""
        model = (type(self.model), self.model.spec, self.model._device)
        settings = {"runtime": self.runtime, "exact_decode": self.exact_decode, "max_pixels": self.max_pixels}
        return functools.partial(_worker_embedder, model, str(self.store.root), settings, self._misses)

    def run_batch(self, pixels, sizes) -> np.ndarray:
        return self._encode(pixels).numpy()

    def _encode(self, pixels):
        """The image tower through ONNX Runtime when chosen and possible, else PyTorch."""
        if self._onnx is None and self._wants_onnx(tuple(pixels.shape[1:])):
            try:
                self._onnx = OnnxImageEncoder.load_or_export(
                    self.model, tuple(pixels.shape[1:]), self.store.root / "onnx", int8=self.runtime == "onnx-int8"
                )
            except Exception as exc:  # an architecture the exporter cannot trace: PyTorch still works
                self._onnx = False
                sys.stderr.write(
                    f"iconograph: ONNX Runtime not used for {self.model.spec} ({one_line(exc)[:200]}); using PyTorch\n"
                )
        return self._onnx(pixels) if self._onnx else self.model.encode_images(pixels)

    def _wants_onnx(self, shape: tuple[int, ...]) -> bool:
        if self._onnx is False or self.runtime == "torch" or self.model.device != "cpu":
            return False
        if self.model.name == "onnx":  # already an ONNX Runtime model
            return False
        if self.runtime in ("onnx", "onnx-int8"):
            return True
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False
        exported = onnx_path(self.store.root / "onnx", self.model, shape).exists()
        return exported or self._misses >= AUTO_MIN_IMAGES

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


def _worker_embedder(model: tuple, store_root: str, settings: dict, misses: int) -> Embedder:
    backend_type, spec, device = model
    embedder = Embedder(backend_type(spec, device), store=store_root, use_cache=False, workers=0, **settings)
    embedder.before_compute(misses)  # the same ONNX Runtime decision as the driver's
    return embedder


def _to_embeddings(results: list[ImageResult]) -> ImageEmbeddings:
    dim = next((len(r.value) for r in results if r.value is not None), 0)
    zeros = np.zeros(dim, np.float32)
    matrix = np.stack([zeros if r.value is None else r.value for r in results]) if results else np.zeros((0, dim))
    return ImageEmbeddings(
        [r.path for r in results],
        matrix.astype(np.float32, copy=False),
        [r.error for r in results],
        [r.content_hash for r in results],
        computed=len({r.content_hash for r in results if r.value is not None and not r.cached}),
        cached=sum(r.cached for r in results),
    )


def embed(
    sources: str | Iterable[str],
    model: Backend | str = DEFAULT_MODEL,
    *,
    crop: str | Path | None = None,
    crop_query: str | None = None,
    detector: str | None = None,
    crop_mode: str = "largest",
    crop_margin: float = 0.05,
    crop_mask: bool = False,
    embedder: Embedder | None = None,
    **embedder_options,
) -> ImageEmbeddings:
    """Embeddings of every image in ``sources`` (through the cache), one row per image.

    >>> found = ig.embed("coins/", crop_query="coin", detector="google/owlv2-base-patch16")
    >>> found.vectors, found.boxes  # one row per coin (the largest per photo), and its box

    With ``crop`` (a box file) or ``crop_query`` (a word the ``detector`` finds) the box is
    embedded instead of the photo: ``crop_mode`` ``"largest"`` or ``"each"`` (a row per box),
    ``crop_margin``, ``crop_mask`` (:mod:`iconograph.engine.crops`). ``embedder_options`` go to
    :class:`Embedder`.
    """
    from iconograph.engine.crops import crop_options, iter_crop_embeddings
    from iconograph.reading.sources import read_collection

    cropping = crop_options(crop, crop_query, detector, crop_mode, crop_margin, crop_mask)
    paths = [item.path for item in read_collection(sources)]
    embedder = embedder or Embedder(model, **embedder_options)
    if cropping is None:
        return embedder.embed_images(paths)
    return ImageEmbeddings.concatenate(list(iter_crop_embeddings(embedder, paths, cropping)))


def run_embed(
    sources: str | Iterable[str],
    model: Backend | str = DEFAULT_MODEL,
    *,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    crop: str | Path | None = None,
    crop_query: str | None = None,
    detector: str | None = None,
    crop_mode: str = "largest",
    crop_margin: float = 0.05,
    crop_mask: bool = False,
    **embedder_options,
) -> RunStats:
    """Embed every image in ``sources`` into the cache and, with ``out``, write the vectors there
    (``iconograph embed``); ``log`` gets a ``path: error`` line per failed image. The crop
    options are :func:`embed`'s."""
    from iconograph.reading.sources import read_collection

    items = read_collection(sources)
    embedder = Embedder(model, **embedder_options)
    result = embed(
        [item.path for item in items],
        crop=crop,
        crop_query=crop_query,
        detector=detector,
        crop_mode=crop_mode,
        crop_margin=crop_margin,
        crop_mask=crop_mask,
        embedder=embedder,
    )
    if out is not None:
        write_embeddings(result, out)
    failures = [(path, error) for path, error in zip(result.paths, result.errors) if error is not None]
    for path, error in failures if log else ():
        log(f"{path}: {error}")
    stats = embedder.stats
    return RunStats(len(items), len(failures), stats.computed, stats.cached, out)


def write_embeddings(result: ImageEmbeddings, path) -> None:
    """Write vectors as ``.npz`` (paths, vectors, errors), ``.parquet`` or ``.jsonl``, atomically."""
    import io
    from pathlib import Path

    from iconograph.engine.files import RecordWriter, atomic_open, atomic_write_bytes

    path = Path(path)
    suffix = path.suffix.lower()
    errors = ["" if e is None else e for e in result.errors]
    boxes = result.boxes
    if suffix == ".npz":
        buffer = io.BytesIO()
        arrays = {"paths": np.array(result.paths), "vectors": result.vectors, "errors": np.array(errors)}
        if boxes is not None:  # with crops: each row's box, NaN for an image without one
            arrays["boxes"] = np.array([b if b is not None else [np.nan] * 4 for b in boxes], np.float64)
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = result.vectors.shape[1]
        columns = {
            "path": result.paths,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(result.vectors.reshape(-1)), dim),
            "error": [e or None for e in errors],
        }
        if boxes is not None:
            columns["box"] = pa.array(boxes, pa.list_(pa.float64(), 4))
        table = pa.table(columns)
        with atomic_open(path, "wb") as handle:
            pq.write_table(table, handle)
    elif suffix in (".jsonl", ".ndjson"):
        with RecordWriter(path) as writer:
            for i, (p, v, e) in enumerate(zip(result.paths, result.vectors, result.errors)):
                record = {"path": p, "vector": None if e else v.tolist(), "error": e}
                if boxes is not None:
                    record["box"] = boxes[i]
                writer.write(record)
    else:
        raise OptionError(f"{path}: embeddings can be written as .npz, .parquet or .jsonl")
