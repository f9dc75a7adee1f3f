"""The main job: a collection in, one prediction per image out, in input order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from iconograph.backends import DEFAULT_MODEL, Backend
from iconograph.classification.results import Prediction
from iconograph.classification.zeroshot import ZeroShotClassifier
from iconograph.engine.embed import Embedder
from iconograph.reading.sources import Item, read_collection


def iter_predictions(items: Sequence[Item | str], classifier, embedder: Embedder) -> Iterator[Prediction]:
    """Embed (through the cache) and classify chunk by chunk; failed images become error records.

    ``classifier`` is anything with ``predict(vectors) -> [labels per row]``: a prepared
    :class:`ZeroShotClassifier` or a trained head as :class:`~iconograph.learning.model_folder.HeadClassifier`.
    """
    paths = [item.path if isinstance(item, Item) else str(item) for item in items]
    for chunk in embedder.iter_images(paths):
        ok = chunk.ok
        decided = iter(classifier.predict(chunk.vectors[ok]) if ok.any() else [])
        for path, error in zip(chunk.paths, chunk.errors):
            yield Prediction(path, error=error) if error is not None else Prediction(path, next(decided))


def classify(
    sources: str | Iterable[str],
    labels: Sequence[str],
    *,
    model: str | Backend = DEFAULT_MODEL,
    templates: str | Sequence[str] | None = "default",
    multi_label: bool = False,
    threshold: float | Mapping[str, float] = 0.5,
    top_k: int | None = None,
    neutral: str = "object",
    embedder: Embedder | None = None,
    **embedder_options,
) -> list[Prediction]:
    """Zero-shot labels for every image in ``sources`` (files, folders, label files).

    >>> import iconograph as ig
    >>> preds = ig.classify("coins/", ["zeus", "eagle", "patera"], multi_label=True, threshold=0.3)
    >>> preds[0].labels  # (LabelScore(label='eagle', score=0.71), ...)

    ``embedder_options`` go to :class:`Embedder` (``store``, ``use_cache``, ``batch_size``,
    ``workers``, ``device``, ``progress``).
    """
    embedder = embedder or Embedder(model, **embedder_options)
    classifier = ZeroShotClassifier(
        labels, templates=templates, multi_label=multi_label, threshold=threshold, top_k=top_k, neutral=neutral
    ).prepare(embedder)
    return list(iter_predictions(read_collection(sources), classifier, embedder))
