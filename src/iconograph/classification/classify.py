"""The main job: a collection in, one prediction per image out, in input order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from iconograph.backends import DEFAULT_MODEL, Backend
from iconograph.classification.results import Prediction, write_predictions
from iconograph.classification.zeroshot import ZeroShotClassifier, parse_label_list, read_labels_file, read_thresholds
from iconograph.engine.crops import CropOptions, crop_options, iter_crop_embeddings
from iconograph.engine.embed import Embedder
from iconograph.engine.runs import RunStats
from iconograph.errors import OptionError
from iconograph.reading.sources import Item, read_collection


def iter_predictions(
    items: Sequence[Item | str], classifier, embedder: Embedder, crop: CropOptions | None = None
) -> Iterator[Prediction]:
    """Embed (through the cache) and classify chunk by chunk; failed images become error records.

    ``classifier`` is anything with ``predict(vectors) -> [labels per row]``: a prepared
    :class:`ZeroShotClassifier` or a trained head as :class:`~iconograph.learning.model_folder.HeadClassifier`.
    With ``crop`` the image's box (or each box) is classified: one record per crop, with its ``box``.
    """
    paths = [item.path if isinstance(item, Item) else str(item) for item in items]
    chunks = embedder.iter_images(paths) if crop is None else iter_crop_embeddings(embedder, paths, crop)
    for chunk in chunks:
        ok = chunk.ok
        decided = iter(classifier.predict(chunk.vectors[ok]) if ok.any() else [])
        boxes = chunk.boxes or [None] * len(chunk.paths)
        for path, error, box in zip(chunk.paths, chunk.errors, boxes):
            labels = next(decided) if error is None else ()
            yield Prediction(path, labels, error, tuple(box) if box is not None else None)


def classify(
    sources: str | Iterable[str],
    labels: str | Sequence[str] | None = None,
    *,
    labels_file: str | Path | None = None,
    model: str | Backend = DEFAULT_MODEL,
    templates: str | Sequence[str] | None = "default",
    multi_label: bool = False,
    threshold: float | str | Mapping[str, float] = 0.5,
    top_k: int | None = None,
    neutral: str = "object",
    embedder: Embedder | None = None,
    crop: str | Path | None = None,
    crop_query: str | None = None,
    detector: str | None = None,
    crop_mode: str = "largest",
    crop_margin: float = 0.05,
    crop_mask: bool = False,
    **embedder_options,
) -> list[Prediction]:
    """Zero-shot labels for every image in ``sources`` (files, folders, label files).

    >>> import iconograph as ig
    >>> preds = ig.classify("coins/", ["zeus", "eagle", "patera"], multi_label=True, threshold=0.3)
    >>> preds[0].labels  # (LabelScore(label='eagle', score=0.71), ...)

    ``labels`` is a list or a comma-separated string; or give ``labels_file`` (one per line).
    ``threshold`` is a number, per-label thresholds, or a thresholds file (CSV/JSON).
    ``embedder_options`` go to :class:`Embedder` (``store``, ``use_cache``, ``batch_size``,
    ``workers``, ``device``, ``progress``, ``runtime``).

    Classify the object, not the photo: ``crop`` (a detect / segment JSONL or a COCO / VOC / YOLO
    box file) or ``crop_query`` (a word the ``detector`` finds) picks each image's box;
    ``crop_mode`` ``"largest"`` or ``"each"`` (a record per box), ``crop_margin`` widens it,
    ``crop_mask`` blanks what is outside its mask (:mod:`iconograph.engine.crops`).
    """
    cropping = crop_options(crop, crop_query, detector, crop_mode, crop_margin, crop_mask)
    items, classifier, embedder = _prepare(
        sources,
        labels,
        labels_file,
        threshold,
        model,
        embedder,
        embedder_options,
        templates=templates,
        multi_label=multi_label,
        top_k=top_k,
        neutral=neutral,
    )
    return list(iter_predictions(items, classifier, embedder, cropping))


def run_classify(
    sources: str | Iterable[str],
    labels: str | Sequence[str] | None = None,
    *,
    labels_file: str | Path | None = None,
    model: str | Backend = DEFAULT_MODEL,
    templates: str | Sequence[str] | None = "default",
    multi_label: bool = False,
    threshold: float | str | Mapping[str, float] = 0.5,
    top_k: int | None = None,
    neutral: str = "object",
    out: str | Path | None = None,
    embedder: Embedder | None = None,
    crop: str | Path | None = None,
    crop_query: str | None = None,
    detector: str | None = None,
    crop_mode: str = "largest",
    crop_margin: float = 0.05,
    crop_mask: bool = False,
    **embedder_options,
) -> RunStats:
    """:func:`classify` written to ``out`` (JSONL or CSV by suffix; ``None``: JSONL on stdout) as
    the records stream in; returns the run's counts (``iconograph classify``)."""
    cropping = crop_options(crop, crop_query, detector, crop_mode, crop_margin, crop_mask)
    items, classifier, embedder = _prepare(
        sources,
        labels,
        labels_file,
        threshold,
        model,
        embedder,
        embedder_options,
        templates=templates,
        multi_label=multi_label,
        top_k=top_k,
        neutral=neutral,
    )
    predictions = iter_predictions(items, classifier, embedder, cropping)
    return write_predictions_run(predictions, len(items), embedder, out)


def _prepare(sources, labels, labels_file, threshold, model, embedder, embedder_options, **zero_shot_settings):
    """Options checked before anything is loaded; then the image paths, the prepared classifier and the embedder."""
    names = choose_labels(labels, labels_file)
    thresholds = parse_threshold(threshold)
    # Only the paths are kept: an Item (with its metadata dict) per image would be memory that
    # grows with the collection for nothing (issue 10: flat memory; benchmarks/bench_memory.py).
    items = [item.path for item in read_collection(sources)]
    embedder = embedder or Embedder(model, **embedder_options)
    classifier = ZeroShotClassifier(names, threshold=thresholds, **zero_shot_settings).prepare(embedder)
    return items, classifier, embedder


def choose_labels(labels: str | Sequence[str] | None, labels_file: str | Path | None) -> list[str]:
    """The labels from exactly one of a list, a comma-separated string or a labels file."""
    if (labels is None) == (labels_file is None):
        raise OptionError("give exactly one of --labels or --labels-file")
    if labels_file is not None:
        return read_labels_file(labels_file)
    return parse_label_list(labels) if isinstance(labels, str) else list(labels)


def parse_threshold(value: float | str | Mapping[str, float]) -> float | Mapping[str, float]:
    """A threshold given as text (``--threshold``): a number from 0 to 1, or a per-label thresholds file."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        if not Path(value).is_file():
            raise OptionError(f"--threshold {value!r} is neither a number nor a thresholds file") from None
        return read_thresholds(value)
    if not 0.0 <= number <= 1.0:  # also false for nan
        raise OptionError(f"--threshold {value!r} is not a number from 0 to 1")
    return number


def write_predictions_run(
    predictions: Iterable[Prediction], total: int, embedder: Embedder, out: str | Path | None
) -> RunStats:
    """Stream predictions to ``out`` (or JSONL to stdout) and count them: classify and predict."""
    failed = write_predictions(predictions, out).failed
    stats = embedder.stats
    return RunStats(total, failed, stats.computed, stats.cached, out)
