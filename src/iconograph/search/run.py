"""One call per command: index a collection, search it, export its reviews (options checked here,
so Python callers and the command line are refused alike)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from iconograph.errors import OptionError
from iconograph.search.collection import DEFAULT_COLLECTION, IndexReport, SearchCollection, TaggerConfig
from iconograph.search.export import export_predictions, export_reviews
from iconograph.search.vectors import SearchHit

SEARCH_MODES = ("auto", "exact", "ann")


def index_collection(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    collection: str = DEFAULT_COLLECTION,
    *,
    store=None,
    model=None,
    labels: str | Sequence[str] | None = None,
    labels_file: str | Path | None = None,
    predictions: str | Path | None = None,
    templates: str = "default",
    multi_label: bool = False,
    threshold: float = 0.5,
    top_k: int | None = None,
    roots: Sequence[str | os.PathLike] = (),
    prune: bool = False,
    rebuild: bool = False,
    ann_threshold: int | None = None,
    index_type: str | None = None,
    regions: str | Path | None = None,
    crop: str | Path | None = None,
    crop_query: str | None = None,
    detector: str | None = None,
    crop_mode: str = "largest",
    crop_margin: float = 0.05,
    crop_mask: bool = False,
    **embedder_options,
) -> IndexReport:
    """Embed (what the cache lacks), tag zero-shot with ``labels`` or attach ``predictions``, and
    index ``sources`` into the collection (``iconograph index``). ``regions``: a detect or segment
    JSONL whose boxes and masks the review page draws on its images.

    With ``crop`` (a box file) or ``crop_query`` (a word the ``detector`` finds) each row's vector
    is its image's largest box's embedding (``crop_margin``, ``crop_mask`` as for
    :func:`iconograph.embed`; ``crop_mode`` ``"largest"`` only: one row per image); the rows keep
    the image paths, and a changed box re-embeds its image on the next index."""
    from iconograph.backends import DEFAULT_MODEL
    from iconograph.classification.results import read_predictions
    from iconograph.classification.zeroshot import parse_label_list, read_labels_file
    from iconograph.engine.crops import crop_options
    from iconograph.engine.embed import Embedder
    from iconograph.search.collection import check_index_crop

    cropping = crop_options(crop, crop_query, detector, crop_mode, crop_margin, crop_mask)
    check_index_crop(cropping)
    if labels is not None and labels_file is not None:
        raise OptionError("give at most one of --labels or --labels-file")
    if predictions is not None and (labels or labels_file):
        raise OptionError("--predictions and --labels/--labels-file exclude each other")
    target = SearchCollection(collection, store)
    embedder = Embedder(model or target.model_spec or DEFAULT_MODEL, store=store, **embedder_options)
    tagger = None
    if labels is not None or labels_file is not None:
        if labels_file is not None:
            names = read_labels_file(labels_file)
        else:
            names = parse_label_list(labels) if isinstance(labels, str) else list(labels)
        tagger = TaggerConfig(tuple(names), templates, multi_label, threshold, top_k)
    report = target.index(
        sources,
        embedder,
        tagger=tagger,
        predictions=read_predictions(predictions) if predictions else None,
        roots=roots,
        prune=prune,
        rebuild=rebuild,
        ann_threshold=ann_threshold,
        index_type=index_type,
        crop=cropping,
    )
    if regions is not None:
        report.regions = asdict(target.regions.attach(regions))
    return report


def tune_collection(
    collection: str = DEFAULT_COLLECTION,
    *,
    target_recall: float | None = None,
    queries: int = 200,
    k: int = 10,
    store=None,
):
    """Measure the ANN query settings on queries sampled from the collection; with
    ``target_recall``, store the fastest that reaches it for later searches
    (``iconograph index --target-recall R`` / ``--bench``). Returns a
    :class:`iconograph.search.tuning.Tuning` (``.table()`` is the recall/latency table)."""
    if target_recall is not None and not 0 < target_recall <= 1:
        raise OptionError("--target-recall must be in (0, 1]")
    return SearchCollection(collection, store).require().tune(target_recall, queries=queries, k=k)


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    mode: str  # the search that ran: exact or ann
    rows: int
    how: str  # the index state in words, or the mode asked for

    def summary(self) -> str:
        return f"{len(self.hits)} hits from {self.rows} images; {self.how}"


def search_collection(
    collection: str = DEFAULT_COLLECTION,
    *,
    text: str | None = None,
    image: str | os.PathLike | None = None,
    like: str | None = None,
    k: int = 20,
    filters: Sequence[str] = (),
    mode: str = "auto",
    model=None,
    store=None,
    device: str | None = None,
) -> SearchResult:
    """Nearest images to a ``text``, an ``image`` file, or an indexed image (``like``): exactly one
    (``iconograph search``). ``like`` names a file from the working directory when one exists
    there, else a path relative to the collection's folders."""
    if sum(x is not None for x in (text, image, like)) != 1:
        raise OptionError("give exactly one of QUERY, --image FILE or --like PATH")
    if mode not in SEARCH_MODES:
        raise OptionError("--mode must be auto, exact or ann")
    target = SearchCollection(collection, store).require()
    if like is not None:
        named = os.path.abspath(like) if os.path.exists(like) else like
        hits, used = target.similar(named, k, filters, mode)
    else:
        from iconograph.engine.embed import Embedder

        embedder = Embedder(
            model or target.model_spec, store=store, batch_size=32, workers=0, device=device, progress=False
        )
        if text is not None:
            hits, used = target.search_text(text, embedder, k, filters, mode)
        else:
            hits, used = target.search_image(image, embedder, k, filters, mode)
    state = target.vectors.state()
    how = state.describe() if used == state.mode else f"{used} search"
    if used == "ann":
        tuned = target.tuned
        how += f"; query settings {target.vectors.settings(state.index_type).describe()}"
        if tuned and tuned.get("index_type") == state.index_type:
            how += f" (tuned for recall@{tuned['k']} {tuned['target_recall']}: {tuned['heldout_recall']} held out)"
    return SearchResult(hits, used, state.rows, how)


def export_collection(
    out: str | Path,
    collection: str = DEFAULT_COLLECTION,
    *,
    reviews: bool = False,
    predictions: bool = False,
    include_predicted: bool = False,
    store=None,
) -> int:
    """Write the reviewed labels (``reviews``) or every image's review-corrected prediction
    (``predictions``), exactly one of them, to ``out``; returns the number of rows (``iconograph export``)."""
    if reviews == predictions:
        raise OptionError("give exactly one of --reviews or --predictions")
    target = SearchCollection(collection, store).require()
    if reviews:
        return export_reviews(target, out, include_predicted=include_predicted)
    return export_predictions(target, out)
