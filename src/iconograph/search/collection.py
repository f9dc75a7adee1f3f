"""A named, searchable collection in the store: its roots, model, vectors, predictions and reviews.

Data path of ``index``: sources -> items -> embed (through the cache: only new content is
computed) -> predictions (zero-shot tagger, or a predictions file) -> upsert rows of changed or
new images into the collection's :class:`VectorTable` -> build or extend the ANN index.

The collection's metadata (a small JSON file in the store) remembers the model, the folders its
images lie in (its roots) and the tagger, so that indexing more images later tags them the same
way without repeating the options. The indexed items are the authority on what the collection
holds: :meth:`SearchCollection.key` turns a user-given path into an item's key, or refuses it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from iconograph.classification.results import LabelScore, Prediction
from iconograph.engine.store import Store
from iconograph.errors import OptionError, UserError
from iconograph.reading.sources import path_key, read_collection
from iconograph.search.reviews import EXCLUDED_LABEL, IMAGE_ACTIONS, ImageReview, Review, ReviewLog
from iconograph.search.vectors import (
    DEFAULT_ANN_THRESHOLD,
    INDEX_TYPES,
    IndexState,
    QuerySettings,
    SearchHit,
    VectorTable,
    sql_string,
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DEFAULT_COLLECTION = "default"
META_TTL = 2.0  # seconds


class CollectionError(UserError):
    """A collection that does not exist or cannot be used as asked; one line for the user."""


class PathRefused(CollectionError):
    """A path with ``..`` or NUL, or (raised by the service) a file whose real location is outside the roots."""


class NotInCollection(CollectionError):
    """A path that names no indexed item of the collection."""


# ---- the tagger: zero-shot settings remembered with the collection ----------------------------


@dataclass(frozen=True)
class TaggerConfig:
    labels: tuple[str, ...]
    templates: str | tuple[str, ...] = "default"
    multi_label: bool = False
    threshold: float | Mapping[str, float] = 0.5
    top_k: int | None = None
    neutral: str = "object"

    def build(self, embedder):
        from iconograph.classification.zeroshot import ZeroShotClassifier, load_templates

        templates = load_templates(list(self.templates) if isinstance(self.templates, tuple) else self.templates)
        return ZeroShotClassifier(
            list(self.labels),
            templates=templates,
            multi_label=self.multi_label,
            threshold=dict(self.threshold) if isinstance(self.threshold, Mapping) else self.threshold,
            top_k=self.top_k,
            neutral=self.neutral,
        ).prepare(embedder)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["labels"] = list(self.labels)
        if isinstance(self.templates, tuple):
            data["templates"] = list(self.templates)
        if isinstance(self.threshold, Mapping):
            data["threshold"] = dict(self.threshold)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TaggerConfig:
        templates = data.get("templates", "default")
        return cls(
            tuple(data["labels"]),
            tuple(templates) if isinstance(templates, list) else templates,
            bool(data.get("multi_label", False)),
            data.get("threshold", 0.5),
            data.get("top_k"),
            data.get("neutral", "object"),
        )


# ---- reports ----------------------------------------------------------------------------------


@dataclass
class IndexReport:
    images: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    removed: int = 0
    computed: int = 0  # embeddings computed by the model in this run
    cached: int = 0  # embeddings found in the cache
    tagged: int = 0
    state: IndexState | None = None
    regions: dict | None = None  # AttachReport of --regions, as a dict

    def summary(self) -> str:
        parts = [
            f"{self.images} images: {self.added} added, {self.updated} updated, {self.unchanged} unchanged",
            f"{len(self.failed)} failed",
        ]
        if self.outside:
            parts.append(f"{len(self.outside)} outside the collection roots (skipped)")
        if self.removed:
            parts.append(f"{self.removed} removed")
        text = "; ".join(parts) + f"; {self.computed} embeddings computed, {self.cached} from cache"
        if self.tagged:
            text += f"; {self.tagged} tagged"
        if self.regions:
            text += f"; regions of {self.regions['attached']} images ({self.regions['boxes']} boxes)"
            if self.regions["unknown"]:
                text += f", {self.regions['unknown']} records of images not in the collection"
        if self.state is not None:
            text += f"\nindex: {self.state.describe()}; {self.state.action}"
            if self.state.action != "none":
                text += f" in {self.state.seconds:.2f}s"
        return text

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "state"}
        data["state"] = self.state.to_dict() if self.state else None
        return data


@dataclass(frozen=True)
class LabelView:
    """One label of one image as the review page shows it."""

    label: str
    score: float | None  # the model's score; None for a label a person added
    decision: str | None = None  # accept | reject | add | remove | None
    box: tuple[float, ...] | None = None

    def to_record(self) -> dict:
        return {"label": self.label, "score": self.score, "decision": self.decision, "box": self.box}


@dataclass(frozen=True)
class ItemView:
    path: str
    labels: tuple[LabelView, ...]
    reviewed: bool
    excluded: bool = False  # a reviewer excluded the image (review queues)
    duplicate_of: str | None = None  # a reviewer marked it a duplicate of this image

    @property
    def top_score(self) -> float | None:
        scores = [lv.score for lv in self.labels if lv.score is not None]
        return max(scores) if scores else None

    def effective_labels(self) -> list[str]:
        """Labels after review: predictions not rejected/removed, plus accepted/added ones."""
        return [lv.label for lv in self.labels if lv.decision not in ("reject", "remove")]

    def confirmed_labels(self) -> list[str]:
        return [lv.label for lv in self.labels if lv.decision in ("accept", "add")]

    def corrected_prediction(self) -> Prediction:
        """The model's prediction corrected by review: confirmed labels score 1, rejected ones go."""
        pairs = [
            LabelScore(lv.label, 1.0 if lv.decision in ("accept", "add") else float(lv.score or 0.0))
            for lv in self.labels
            if lv.decision not in ("reject", "remove")
        ]
        return Prediction(self.path, tuple(sorted(pairs, key=lambda p: -p.score)))

    def to_record(self) -> dict:
        return {
            "path": self.path,
            "labels": [lv.to_record() for lv in self.labels],
            "reviewed": self.reviewed,
            "top_score": self.top_score,
            "excluded": self.excluded,
            "duplicate_of": self.duplicate_of,
        }


def item_view(path: str, labels: Sequence[str], scores: Sequence[float], review: ImageReview | None) -> ItemView:
    decisions = review.decisions if review else {}
    image = review.image_decision if review else None
    decisions = {k: d for k, d in decisions.items() if not _image_level(d)}
    views = []
    for label, score in zip(labels, scores):
        decision = decisions.get(label)
        views.append(LabelView(label, float(score), decision.action if decision else None, _box(decision)))
    predicted = set(labels)
    for label, decision in decisions.items():
        if label not in predicted:
            views.append(LabelView(label, None, decision.action, _box(decision)))
    return ItemView(
        path,
        tuple(views),
        bool(review and review.decisions),
        image is not None and image.action == "exclude",
        image.label if image is not None and image.action == "duplicate" else None,
    )


def _image_level(decision) -> bool:
    """An exclude/duplicate decision, or the ``remove`` that took one back: not about a label."""
    return decision.action in IMAGE_ACTIONS or decision.label == EXCLUDED_LABEL or os.path.isabs(decision.label)


def _box(decision) -> tuple[float, ...] | None:
    return tuple(decision.box) if decision is not None and decision.box is not None else None


# ---- the collection ---------------------------------------------------------------------------


class SearchCollection:
    """A named collection in a store (``iconograph index --collection NAME``)."""

    def __init__(self, name: str = DEFAULT_COLLECTION, store: Store | str | None = None):
        if not NAME_PATTERN.match(name):
            raise CollectionError(
                f"collection name {name!r}: use letters, digits, '_' and '-' (up to 64, starting alphanumeric)"
            )
        self.name = name
        self.store = store if isinstance(store, Store) else Store(store)
        self.reviews = ReviewLog(self.store, name)
        self._vectors: VectorTable | None = None
        self._rows_cache: tuple[tuple, dict] | None = None
        self._rows_lock = threading.Lock()
        self._meta: tuple[float, dict] | None = None

    # ---- metadata ---------------------------------------------------------------------------

    @property
    def meta_name(self) -> str:
        return f"search_collection_{self.name}"

    @property
    def meta(self) -> dict:
        """The collection's metadata (re-read at most every ``META_TTL`` seconds, and after writes)."""
        cached = self._meta
        if cached is None or time.monotonic() - cached[0] >= META_TTL:
            cached = self._meta = (time.monotonic(), self.store.read_meta(self.meta_name) or {})
        return dict(cached[1])

    @property
    def exists(self) -> bool:
        return bool(self.meta.get("table"))

    def require(self) -> SearchCollection:
        if not self.exists:
            known = list_collections(self.store)
            hint = f" (known: {', '.join(known)})" if known else " (run 'iconograph index SOURCE' first)"
            raise CollectionError(f"no collection named {self.name!r} in {self.store.root}{hint}")
        return self

    @property
    def roots(self) -> list[str]:
        return list(self.meta.get("roots", []))

    @property
    def model_spec(self) -> str | None:
        return self.meta.get("model")

    @property
    def tagger(self) -> TaggerConfig | None:
        data = self.meta.get("tagger")
        return TaggerConfig.from_dict(data) if data else None

    @property
    def vectors(self) -> VectorTable:
        table = self.meta.get("table")
        if table is None:
            raise CollectionError(f"collection {self.name!r} has not been indexed yet")
        meta = self.meta
        index_type = meta.get("index_type", INDEX_TYPES[0])
        if self._vectors is None or self._vectors.name != table or self._vectors.index_type != index_type:
            self._vectors = VectorTable(
                self.store.db, table, meta.get("ann_threshold", DEFAULT_ANN_THRESHOLD), index_type=index_type
            )
        tuned = meta.get("query") or {}
        self._vectors.query_settings = (
            {tuned["index_type"]: QuerySettings.from_dict(tuned["settings"])} if tuned.get("settings") else {}
        )
        return self._vectors

    @property
    def tuned(self) -> dict | None:
        """The query settings chosen by :meth:`tune` (with the recall they reached), if any."""
        return self.meta.get("query")

    def _update_meta(self, *, drop: Sequence[str] = (), **changes) -> None:
        meta = self.meta
        meta.update({k: v for k, v in changes.items() if v is not None})
        for key in drop:
            meta.pop(key, None)
        meta["name"] = self.name
        self.store.write_meta(self.meta_name, meta)
        self._meta = None

    # ---- indexing ---------------------------------------------------------------------------

    def index(
        self,
        sources: str | os.PathLike | Iterable[str | os.PathLike],
        embedder,
        *,
        tagger: TaggerConfig | None = None,
        predictions: Sequence[Prediction] | None = None,
        roots: Sequence[str | os.PathLike] = (),
        prune: bool = False,
        rebuild: bool = False,
        ann_threshold: int | None = None,
        index_type: str | None = None,
        crop=None,
    ) -> IndexReport:
        """Add new or changed images of ``sources``; embed only what the cache lacks.

        ``tagger`` tags every image (and is remembered for later runs); ``predictions``
        (from ``classify``/``predict``) attach existing predictions by path instead.
        ``index_type`` (IVF_HNSW_SQ or IVF_PQ; remembered) is the ANN index built once the
        collection reaches ``ann_threshold`` rows; an index of another type is rebuilt.

        ``crop`` (:class:`~iconograph.engine.crops.CropOptions`, mode ``largest``): a row's vector
        is the embedding of its image's largest box, and the row is re-embedded when the image or
        its crop (box, margin, mask) changes; the row keeps the image's path (an image without a
        box is a failure, "no box to crop").
        """
        check_index_crop(crop)
        if index_type is not None and index_type not in INDEX_TYPES:
            raise CollectionError(f"index type must be one of {', '.join(INDEX_TYPES)}; got {index_type!r}")
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        sources = [Path(s) for s in sources]
        items, listed = [], set()
        for source in sources:
            found = read_collection(source)
            items.extend(found)
            if not source.is_dir():  # a list file or an image file: each image named is an item
                listed.update(os.path.abspath(item.path) for item in found)
        all_roots = set(self.roots) | set(collection_roots(sources)) | {os.path.realpath(r) for r in roots}
        report = IndexReport(images=len(items))
        # Images found by walking a folder must stay inside it (a link may lead out); an image
        # named in a list is taken as named, and its own folder becomes a root once it is indexed.
        paths, report.outside = _split_inside([os.path.abspath(item.path) for item in items], all_roots, listed)

        model = embedder.model
        # One table per model and decode mode: vectors from reduced and exact decoding never mix.
        image_key = model.image_cache_key(getattr(embedder, "exact_decode", False))
        table = f"search_{self.name}_{image_key[:16]}"
        previous_tagger = self.tagger if self.meta.get("table") == table else None
        self._update_meta(
            model=_model_spec(model.spec),
            cache_key=model.cache_key,
            image_key=image_key,
            table=table,
            roots=sorted(all_roots),
            ann_threshold=ann_threshold or self.meta.get("ann_threshold") or DEFAULT_ANN_THRESHOLD,
            index_type=index_type,
        )
        if tagger is not None:
            self._update_meta(tagger=tagger.to_dict())
        vectors = self.vectors
        if ann_threshold:
            vectors.ann_threshold = ann_threshold

        existing = _existing_hashes(vectors)
        embeddings = _embed(embedder, paths, crop)
        report.computed, report.cached = embeddings.computed, embeddings.cached
        retag = predictions is not None or (tagger is not None and tagger != previous_tagger)
        write: list[int] = []
        for i, (path, digest, error) in enumerate(zip(embeddings.paths, embeddings.hashes, embeddings.errors)):
            if error is not None:
                report.failed.append((path, error))
            elif path not in existing:
                report.added += 1
                write.append(i)
            elif existing[path] != digest:
                report.updated += 1
                write.append(i)
            else:
                report.unchanged += 1
                if retag:
                    write.append(i)
        labels, scores = self._predict(
            [embeddings.paths[i] for i in write],
            embeddings.vectors[write],
            embedder,
            tagger or self.tagger,
            predictions,
        )
        report.tagged = sum(1 for x in labels if x)
        vectors.upsert(
            [embeddings.paths[i] for i in write],
            [embeddings.hashes[i] for i in write],
            embeddings.vectors[write],
            labels,
            scores,
        )
        if prune:
            gone = [p for p in existing if not os.path.exists(p)]
            vectors.delete_paths(gone)
            report.removed = len(gone)
        built = vectors.state()
        rebuild = rebuild or (built.mode == "ann" and built.index_type != vectors.index_type)
        report.state = vectors.maintain(rebuild=rebuild)
        if report.state.action == "created":  # settings tuned for the previous index no longer hold
            self._update_meta(drop=["query"])
        all_roots |= {
            os.path.dirname(os.path.realpath(path))
            for path, error in zip(embeddings.paths, embeddings.errors)
            if error is None and path in listed
        }
        self._update_meta(index=report.state.to_dict(), roots=sorted(all_roots))
        return report

    def tune(self, target_recall: float | None = 0.95, *, queries: int = 200, k: int = 10, seed: int = 0):
        """Measure ANN query settings on queries sampled from the collection
        (:func:`iconograph.search.tuning.tune`); with ``target_recall``, store the fastest setting
        that reaches it, which every later search of the collection uses."""
        from iconograph.search.tuning import tune

        result = tune(self.require().vectors, target_recall, queries=queries, k=k, seed=seed)
        if target_recall is not None and result.chosen is not None:
            self._update_meta(
                query={
                    "index_type": result.index_type,
                    "settings": result.chosen.settings.to_dict(),
                    "target_recall": target_recall,
                    "reached": result.reached,
                    "recall": round(result.chosen.recall, 4),
                    "heldout_recall": round(result.heldout.recall, 4),
                    "k": k,
                    "rows": result.rows,
                }
            )
        return result

    def _predict(self, paths, matrix, embedder, tagger, predictions) -> tuple[list[list[str]], list[list[float]]]:
        if not paths:
            return [], []
        if predictions is not None:
            by_path = {path_key(p.path): p for p in predictions}
            found = [by_path.get(path_key(path)) for path in paths]
            decided = [p.labels if p is not None and p.error is None else () for p in found]
        elif tagger is not None:
            decided = tagger.build(embedder).predict(matrix)
        else:
            decided = [() for _ in paths]
        return [[ls.label for ls in d] for d in decided], [[ls.score for ls in d] for d in decided]

    # ---- search -----------------------------------------------------------------------------

    def search_vector(
        self, query: np.ndarray, k: int = 20, filters: Sequence[str] = (), mode: str = "auto"
    ) -> tuple[list[SearchHit], str]:
        self.require()
        try:
            return self.vectors.search(query, k, self.where(filters), mode)
        except ValueError as exc:
            raise CollectionError(str(exc)) from None

    def _check_model(self, embedder) -> None:
        key = self.require().meta.get("cache_key")
        if key and embedder.model.cache_key != key:
            raise CollectionError(
                f"collection {self.name!r} was indexed with model {self.model_spec}; search it with that model"
            )

    def search_text(self, text: str, embedder, k: int = 20, filters: Sequence[str] = (), mode: str = "auto"):
        if not text.strip():
            raise CollectionError("the search text is empty")
        self._check_model(embedder)
        return self.search_vector(embedder.embed_texts([text])[0], k, filters, mode)

    def search_image(self, path: str | os.PathLike, embedder, k: int = 20, filters=(), mode: str = "auto"):
        self._check_model(embedder)
        result = embedder.embed_images([str(path)])
        if result.errors[0] is not None:
            raise CollectionError(f"{path}: {result.errors[0]}")
        return self.search_vector(result.vectors[0], k, filters, mode)

    def similar(self, path: str, k: int = 20, filters=(), mode: str = "auto"):
        """More like an image of the collection (see :meth:`key`), using its stored vector (no model needed)."""
        key = self.key(path)
        found = self.vectors.vectors_for([key])
        if key not in found:
            raise NotInCollection(f"{path}: not in collection {self.name!r}")
        return self.search_vector(found[key], k, filters, mode)

    def where(self, filters: Sequence[str]) -> str | None:
        """``label=X`` filters (all must hold) as a LanceDB SQL prefilter over reviewed labels.

        A label matches when the model predicted it and no review rejected or removed it, or
        when a review accepted or added it. Reviews are few, so their paths go in as lists.
        """
        clauses = []
        state = self.reviews.state() if filters else {}
        for label in parse_filters(filters):
            confirmed = [p for p, r in state.items() if label in r.decisions and r.decisions[label].positive]
            excluded = [p for p, r in state.items() if label in r.decisions and not r.decisions[label].positive]
            clause = f"array_has(labels, {sql_string(label)})"
            if confirmed:
                clause = f"({clause} OR path IN ({', '.join(map(sql_string, confirmed))}))"
            if excluded:
                clause = f"({clause} AND path NOT IN ({', '.join(map(sql_string, excluded))}))"
            clauses.append(clause)
        return " AND ".join(clauses) or None

    # ---- browsing and review ---------------------------------------------------------------

    def _rows(self) -> dict[str, tuple[list[str], list[float]]]:
        """path -> (labels, scores), cached until the table changes."""
        vectors = self.vectors
        vectors.refresh()
        key = (vectors.name, vectors.table.version if vectors.table is not None else -1)
        with self._rows_lock:
            if self._rows_cache is None or self._rows_cache[0] != key:
                rows = vectors.rows(("path", "labels", "scores"))
                data = {
                    p: (list(lab or []), [float(s) for s in sc or []])
                    for p, lab, sc in zip(
                        rows.column("path").to_pylist(),
                        rows.column("labels").to_pylist(),
                        rows.column("scores").to_pylist(),
                    )
                }
                self._rows_cache = (key, dict(sorted(data.items())))
            return self._rows_cache[1]

    def items(
        self,
        *,
        label: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        reviewed: bool | None = None,
    ) -> list[ItemView]:
        """Every indexed image with its predictions and review state, filtered, sorted by path."""
        self.require()
        state = self.reviews.state()
        views = []
        for path, (labels, scores) in self._rows().items():
            view = item_view(path, labels, scores, state.get(path))
            if label and label not in view.effective_labels():
                continue
            if reviewed is not None and view.reviewed != reviewed:
                continue
            score = _score_of(view, label)
            if min_score is not None and (score is None or score < min_score):
                continue
            if max_score is not None and (score is None or score > max_score):
                continue
            views.append(view)
        return views

    @property
    def regions(self):
        """The boxes and masks attached to the collection's images (:mod:`iconograph.search.regions`)."""
        from iconograph.search.regions import RegionTable

        return RegionTable(self)

    def item(self, path: str) -> ItemView:
        """One image of the collection (see :meth:`key`) with its predictions and review state."""
        key = self.key(path)
        labels, scores = self._rows()[key]
        return item_view(key, labels, scores, self.reviews.state().get(key))

    def views(self, hits: Sequence[SearchHit]) -> list[ItemView]:
        state = self.reviews.state()
        return [item_view(h.path, h.labels, h.scores, state.get(h.path)) for h in hits]

    def review(self, review: Review) -> Review:
        """Record one decision for an image of this collection (committed before returning)."""
        return self.reviews.record(replace(review, path=self.key(review.path)))

    def label_names(self) -> list[str]:
        names = {lab for labels, _ in self._rows().values() for lab in labels}
        names |= {r.label for r in self.reviews.all()}
        tagger = self.tagger
        if tagger:
            names |= set(tagger.labels)
        return sorted(names)

    # ---- files ------------------------------------------------------------------------------

    def candidates(self, path: str) -> list[str]:
        """The absolute paths a user-given ``path`` may name: itself if absolute, else joined to each root.

        Refused with :class:`PathRefused`: an empty path, NUL, and ``..`` components.
        """
        if not path or "\x00" in path:
            raise PathRefused("empty or invalid path")
        if ".." in path.replace("\\", "/").split("/"):
            raise PathRefused(f"{path}: '..' is not allowed")
        return [os.path.abspath(path)] if os.path.isabs(path) else [os.path.join(r, path) for r in self.roots]

    def key(self, path: str) -> str:
        """The key (absolute path, as indexed) of the item ``path`` names; the one rule for
        every path a user gives: an item's absolute path, or a path relative to a root (see
        :meth:`candidates`). A path that names no indexed item: :class:`NotInCollection`.

        Whether the item's file may be read and sent is not decided here: the service checks
        where the file really lies (``iconograph.service.servable``).
        """
        rows = self._rows()
        for candidate in self.candidates(path):
            if candidate in rows:
                return candidate
        raise NotInCollection(f"{path}: not in collection {self.name!r}")

    def stats(self) -> dict:
        self.require()
        return {
            "name": self.name,
            "model": self.model_spec,
            "roots": self.roots,
            "images": self.vectors.count(),
            "reviews": self.reviews.count(),
            "index": self.vectors.state().to_dict(),
            "query_settings": self.tuned,
            "tagger": self.tagger.to_dict() if self.tagger else None,
        }


def _score_of(view: ItemView, label: str | None) -> float | None:
    if label is None:
        return view.top_score
    return next((lv.score for lv in view.labels if lv.label == label), None)


def parse_filters(filters: Sequence[str]) -> list[str]:
    labels = []
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep or key.strip() != "label" or not value.strip():
            raise CollectionError(f"filter {text!r}: write label=NAME")
        labels.append(value.strip())
    return labels


def list_collections(store: Store) -> list[str]:
    folder = store.root / "meta"
    prefix = "search_collection_"
    return sorted(p.stem[len(prefix) :] for p in folder.glob(f"{prefix}*.json")) if folder.exists() else []


def collection_roots(sources: Sequence[Path]) -> list[str]:
    """The folder sources (real paths). A list file's folder is no root: the images it names
    are, each by its own folder (see :meth:`SearchCollection.index`)."""
    return [os.path.realpath(source) for source in sources if os.path.isdir(source)]


def is_inside(real: str, roots: Collection[str]) -> bool:
    """Whether the real, absolute path ``real`` is one of ``roots`` or lies below one."""
    roots = roots if isinstance(roots, (set, frozenset)) else frozenset(roots)
    while True:
        if real in roots:
            return True
        parent = os.path.dirname(real)
        if parent == real:
            return False
        real = parent


def _split_inside(paths: list[str], roots: Collection[str], listed: Collection[str]) -> tuple[list[str], list[str]]:
    inside, outside = [], []
    roots = frozenset(roots)
    for path in paths:
        (inside if path in listed or is_inside(os.path.realpath(path), roots) else outside).append(path)
    return inside, outside


def check_index_crop(crop) -> None:
    """Refuse crop settings that do not fit a collection (one row per image)."""
    if crop is not None and crop.mode != "largest":
        raise OptionError(
            f"index --crop-mode {crop.mode}: a collection has one row per image, so it indexes the largest box only"
            " (--crop-mode largest)"
        )


def _embed(embedder, paths: list[str], crop):
    """The images' embeddings; with ``crop``, their largest boxes', each row's ``hashes`` entry
    then the identity of its image and crop together (what tells a changed box on re-index)."""
    if crop is None:
        return embedder.embed_images(paths)
    from iconograph.engine.crops import iter_crop_embeddings
    from iconograph.engine.embed import ImageEmbeddings
    from iconograph.engine.fingerprint import digest

    embeddings = ImageEmbeddings.concatenate(list(iter_crop_embeddings(embedder, paths, crop)))
    embeddings.hashes = [
        digest(content, key) if content is not None and key is not None else content
        for content, key in zip(embeddings.hashes, embeddings.crop_keys)
    ]
    return embeddings


def _existing_hashes(vectors: VectorTable) -> dict[str, str]:
    rows = vectors.rows(("path", "hash"))
    return dict(zip(rows.column("path").to_pylist(), rows.column("hash").to_pylist()))


def _model_spec(spec: str) -> str:
    """Local model folders are remembered as absolute paths, so ``serve`` works from anywhere."""
    return os.path.abspath(spec) if os.path.exists(spec) else spec


def open_collection(name: str = DEFAULT_COLLECTION, store: Store | str | None = None) -> SearchCollection:
    return SearchCollection(name, store).require()
