"""Compare template sets and models on one labelled collection.

For every model the images are embedded once (through the :class:`~iconograph.engine.embed.Embedder`
and its cache); each template set then costs only its text embeddings. Every (model, template
set) combination is classified exactly as ``classify --templates SET`` would and scored with
:func:`~iconograph.evaluation.metrics.evaluate`, so a row holds the same numbers as
``classify`` followed by ``evaluate``.

>>> import iconograph as ig
>>> result = ig.compare("coins/", truth="truth.csv", labels=["zeus", "eagle"], templates=["default", "photo"])
>>> result.rows[0]["accuracy"], result.rows[0]["templates"]
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from iconograph.backends import DEFAULT_MODEL, Backend
from iconograph.classification.classify import choose_labels
from iconograph.classification.results import Prediction
from iconograph.classification.zeroshot import TEMPLATE_SETS, LabelError, ZeroShotClassifier, load_templates
from iconograph.engine.embed import Embedder
from iconograph.engine.runs import RunStats
from iconograph.errors import OptionError
from iconograph.evaluation.metrics import evaluate, read_truth
from iconograph.reading.sources import Item, SourceError, read_collection

ENSEMBLE = "ensemble"
METRICS = ("accuracy", "top5_accuracy", "f1_micro", "f1_macro", "f1_samples", "mAP")
CSV_COLUMNS = (
    "model",
    "templates",
    "n_templates",
    "task",
    *METRICS,
    "images_computed",
    "images_cached",
    "images_failed",
    "seconds_per_1000_images",
    "embedding_seconds",
    "text_seconds",
    "evaluated",
    "errors",
)


@dataclass
class TemplateSet:
    """A named list of templates: a built-in set, a file, one inline template, or the ensemble."""

    name: str
    templates: list[str]


@dataclass
class Comparison:
    """One row per (model, template set), best first by ``sort``.

    Each row has :func:`evaluate`'s keys (``accuracy``, ``f1_macro``, ``per_class``, ``counts``, ...)
    plus ``model``, ``templates``, ``n_templates``, ``images_computed``, ``images_cached``, ``images_failed``,
    ``seconds_per_1000_images`` (the image tower's time in this run per 1000 images it computed,
    after an untimed one-image warm-up; decoding excluded; ``None`` when every embedding came
    from the cache), ``embedding_seconds`` (the whole image pass: hashing, decoding, cache, model
    loading) and ``text_seconds`` (the set's prompts).
    """

    rows: list[dict]
    sort: str
    template_sets: list[TemplateSet] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.rows[0]["task"] if self.rows else "single-label"

    def to_json(self) -> dict:
        return {
            "sort": self.sort,
            "labels": self.labels,
            "template_sets": {s.name: s.templates for s in self.template_sets},
            "rows": self.rows,
        }

    def run_stats(self, out: str | None = None) -> RunStats:
        """The summary-line counts: images once, embeddings summed over the models."""
        per_model = {row["model"]: row for row in self.rows}.values()
        first = self.rows[0] if self.rows else {"images_failed": 0, "counts": {"predictions": 0}}
        return RunStats(
            first["counts"]["predictions"],
            first["images_failed"],
            sum(row["images_computed"] for row in per_model),
            sum(row["images_cached"] for row in per_model),
            out,
        )

    def write_json(self, path: str | os.PathLike) -> Path:
        import json

        from iconograph.engine.files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_json(), indent=2, ensure_ascii=False))
        return Path(path)

    def write_csv(self, path: str | os.PathLike) -> Path:
        """The scalar columns of every row (:data:`CSV_COLUMNS`), best first; CSV or TSV by suffix."""
        from iconograph.engine.files import RecordWriter

        with RecordWriter(path, columns=CSV_COLUMNS) as writer:
            writer.write_all(csv_record(row) for row in self.rows)
        return Path(path)

    def write_report(self, path: str | os.PathLike, title: str = "iconograph comparison") -> Path:
        path = Path(path)
        from iconograph.engine.files import atomic_write_text

        atomic_write_text(path, render_report(self, title))
        return path


def csv_record(row: dict) -> dict:
    counts = row.get("counts", {})
    return {
        **{k: row.get(k) for k in CSV_COLUMNS},
        "evaluated": counts.get("evaluated"),
        "errors": counts.get("errors"),
    }


def template_set(argument: str | Sequence[str]) -> TemplateSet:
    """``--templates`` argument to a set: a built-in name, a file, or one inline template (has ``{}``)."""
    if not isinstance(argument, str):
        templates = load_templates(list(argument))
        return TemplateSet(" | ".join(templates), templates)
    if "{}" in argument and not Path(argument).is_file():
        return TemplateSet(argument, load_templates([argument]))
    if argument not in TEMPLATE_SETS and not Path(argument).is_file():
        raise LabelError(
            f"template set {argument!r} is neither a built-in set ({', '.join(TEMPLATE_SETS)}), "
            "a file, nor a template with '{}'"
        )
    return TemplateSet(argument, load_templates(argument))


def ensemble_templates(sets: Iterable[TemplateSet]) -> list[str]:
    """All templates of all sets, each once, in the order first given."""
    return list(dict.fromkeys(t for s in sets for t in s.templates))


def resolve_template_sets(templates: Iterable[str | Sequence[str]], *, ensemble: bool = False) -> list[TemplateSet]:
    sets = [template_set(argument) for argument in templates]
    if not sets:
        raise LabelError("give at least one template set")
    names = [s.name for s in sets]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise LabelError(f"template set {twice!r} is given twice")
    if ensemble:
        if ENSEMBLE in names:
            raise LabelError(f"a template set may not be called {ENSEMBLE!r} with --ensemble")
        sets.append(TemplateSet(ENSEMBLE, ensemble_templates(sets)))
    return sets


def default_sort(task: str) -> str:
    return "mAP" if task == "multi-label" else "accuracy"


def sort_rows(rows: list[dict], metric: str) -> list[dict]:
    """Best first by ``metric`` (fastest first for ``seconds_per_1000_images``); ties keep run order."""
    if metric == "seconds_per_1000_images":
        return sorted(rows, key=lambda r: (r.get(metric) is None, r.get(metric) or 0.0))
    return sorted(rows, key=lambda r: -(r.get(metric) if r.get(metric) is not None else float("-inf")))


def compare(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    truth: str | os.PathLike | Sequence[Item] | Mapping[str, Sequence[str]],
    labels: str | Sequence[str] | None = None,
    *,
    labels_file: str | os.PathLike | None = None,
    templates: Iterable[str | Sequence[str]] = ("default",),
    models: Iterable[str | Backend | Embedder] | Mapping[str, str | Backend | Embedder] = (DEFAULT_MODEL,),
    ensemble: bool = False,
    multi_label: bool = False,
    threshold: float | Mapping[str, float] = 0.5,
    top_k: int | None = None,
    neutral: str = "object",
    sort: str | None = None,
    **embedder_options,
) -> Comparison:
    """Every (model, template set) on ``sources``, scored against ``truth``.

    ``labels`` (a list or a comma-separated string) or ``labels_file``; neither takes the truth's classes. ``models`` are model specs, backends or ready
    :class:`Embedder` objects (then ``embedder_options`` do not apply to them), or a mapping of
    row names to them. Metrics are
    :func:`evaluate`'s with its default task (multi-label when some truth image has other than
    one label), exactly as ``classify`` then ``evaluate`` give them. ``sort``: a metric
    (default ``accuracy``, or ``mAP`` for multi-label).
    """
    sets = resolve_template_sets(templates, ensemble=ensemble)
    truth_items = truth if isinstance(truth, Mapping) else read_truth(truth) if _is_path(truth) else list(truth)
    if labels is None and labels_file is None:
        labels = sorted({label for item in _items(truth_items) for label in item.labels or ()})
    labels = choose_labels(labels, labels_file)
    if sort is not None and sort not in (*METRICS, "seconds_per_1000_images"):
        raise LabelError(f"cannot sort by {sort!r}; choose from {', '.join((*METRICS, 'seconds_per_1000_images'))}")
    items = read_collection(sources)
    if not items:
        raise SourceError("no images found in the sources")
    paths = [item.path for item in items]
    models = list(models.items()) if isinstance(models, Mapping) else [(None, m) for m in models]
    if not models:
        raise LabelError("give at least one model")
    specs = [model for _, model in models if isinstance(model, str)]
    twice = next((spec for spec in specs if specs.count(spec) > 1), None)
    if twice is not None:
        raise OptionError(f"model {twice!r} is given twice")
    # Check every label and template before any model is loaded or image embedded.
    classifiers = [
        ZeroShotClassifier(
            labels, templates=s.templates, multi_label=multi_label, threshold=threshold, top_k=top_k, neutral=neutral
        )
        for s in sets
    ]
    rows = []
    for name, model in models:
        embedder = model if isinstance(model, Embedder) else Embedder(model, **embedder_options)
        name = name or (model if isinstance(model, str) else embedder.model.spec)
        before = (embedder.stats.computed, embedder.stats.cached)
        start = time.perf_counter()
        with timed_image_tower(embedder) as tower:
            embedded = embedder.embed_images(paths)
        seconds = time.perf_counter() - start
        computed = embedder.stats.computed - before[0]
        cached = embedder.stats.cached - before[1]
        ok = embedded.ok
        for s, classifier in zip(sets, classifiers):
            start = time.perf_counter()
            classifier.prepare(embedder)
            text_seconds = time.perf_counter() - start
            decided = iter(classifier.predict(embedded.vectors[ok]) if ok.any() else [])
            predictions = [
                Prediction(path, error=error) if error is not None else Prediction(path, next(decided))
                for path, error in zip(embedded.paths, embedded.errors)
            ]
            metrics = evaluate(predictions, truth_items)
            rows.append(
                {
                    "model": str(name),
                    "templates": s.name,
                    "n_templates": len(s.templates),
                    **metrics,
                    "images_computed": computed,
                    "images_cached": cached,
                    "images_failed": int((~ok).sum()),
                    "seconds_per_1000_images": 1000 * tower.seconds / computed if computed else None,
                    "embedding_seconds": seconds,
                    "text_seconds": text_seconds,
                }
            )
    sort = sort or default_sort(rows[0]["task"])
    return Comparison(sort_rows(rows, sort), sort, sets, classifiers[0].labels)


class _Tower:
    seconds = 0.0


@contextmanager
def timed_image_tower(embedder: Embedder):
    """Time the embedder's model batches (``run_batch``, what the job runner calls on a cache
    miss); the first batch is preceded by an untimed one-image warm-up, so lazy loading and
    first-call start-up do not count against the first model compared."""
    tower = _Tower()
    run_batch = embedder.run_batch

    def timed(pixels, sizes):
        if not getattr(timed, "warm", False):
            run_batch(pixels[:1], sizes[:1])
            timed.warm = True
        start = time.perf_counter()
        try:
            return run_batch(pixels, sizes)
        finally:
            tower.seconds += time.perf_counter() - start

    embedder.run_batch = timed  # an instance attribute over the method, removed again below
    try:
        yield tower
    finally:
        del embedder.run_batch


def _is_path(value) -> bool:
    return isinstance(value, (str, os.PathLike))


def _items(truth) -> list[Item]:
    if isinstance(truth, Mapping):
        return [Item(str(path), tuple(labels)) for path, labels in truth.items()]
    return list(truth)


# ---- output ---------------------------------------------------------------------------------


def format_value(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def print_table(comparison: Comparison, console=None) -> None:
    """The rows as a Rich table, best first by the sort metric."""
    from rich.console import Console
    from rich.table import Table

    metrics = [m for m in METRICS if any(m in row for row in comparison.rows)]
    n = comparison.rows[0]["counts"]["evaluated"] if comparison.rows else 0
    table = Table(title=f"{comparison.task} comparison ({n} images), sorted by {comparison.sort}")
    table.add_column("model")
    table.add_column("templates")
    table.add_column("n", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right", style="bold" if metric == comparison.sort else None)
    table.add_column("s / 1000 img", justify="right")
    for row in comparison.rows:
        speed = row["seconds_per_1000_images"]
        table.add_row(
            row["model"],
            row["templates"],
            str(row["n_templates"]),
            *(format_value(row.get(m)) for m in metrics),
            "cached" if speed is None else f"{speed:.2f}",
        )
    if console is None:
        console = Console()
        if not console.is_terminal:  # a pipe or a file: no 80-column squeeze
            console = Console(width=max(console.width, 160))
    console.print(table)


def bar_chart(comparison: Comparison, metric: str) -> bytes:
    """One horizontal bar per combination (best on top) for ``metric``, as PNG bytes."""
    from iconograph.evaluation.report.figures import _figure, _png, palette

    rows = sort_rows(comparison.rows, metric)
    names = [f"{r['model']} · {r['templates']}" for r in rows]
    values = [r.get(metric) or 0.0 for r in rows]
    models = list(dict.fromkeys(r["model"] for r in comparison.rows))
    figure = _figure(7, 0.8 + 0.32 * len(rows))
    axes = figure.add_subplot()
    axes.barh(range(len(rows)), values, color=[palette(models.index(r["model"])) for r in rows])
    axes.set_yticks(range(len(rows)), [_short(n) for n in names], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel(metric)
    axes.set_title(metric)
    for i, value in enumerate(values):
        axes.text(min(value, 0.9) + 0.01, i, f"{value:.3f}", va="center", fontsize=7)
    return _png(figure)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def render_report(comparison: Comparison, title: str = "iconograph comparison") -> str:
    """One self-contained HTML page: the sorted table, a bar chart per metric, per-class F1 of the best two."""
    from iconograph.evaluation.report.html import environment

    metrics = [m for m in METRICS if any(m in row for row in comparison.rows)]
    charts = {m: base64.b64encode(bar_chart(comparison, m)).decode() for m in metrics}
    best = comparison.rows[:2]
    classes = sorted({c for row in best for c in row.get("per_class", {})})
    per_class = [
        {
            "label": c,
            "f1": [row["per_class"].get(c, {}).get("f1") for row in best],
            "support": max(row["per_class"].get(c, {}).get("support", 0) for row in best),
        }
        for c in classes
    ]
    return (
        environment()
        .get_template("compare.html.j2")
        .render(
            title=title,
            comparison=comparison,
            metrics=metrics,
            charts=charts,
            best=best,
            per_class=per_class,
            template_sets=comparison.template_sets,
        )
    )
