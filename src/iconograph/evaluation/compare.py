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
from iconograph.evaluation.fewshot import DEFAULT_SHOTS, FewShot, check_shots, few_shot_split, probe_rows
from iconograph.evaluation.metrics import evaluate, read_truth
from iconograph.learning.splits import is_multi_label_items
from iconograph.reading.sources import Item, SourceError, path_key, read_collection

ENSEMBLE = "ensemble"
ZERO_SHOT = "zero-shot"
METRICS = ("accuracy", "top5_accuracy", "f1_micro", "f1_macro", "f1_samples", "mAP")
CSV_COLUMNS = (
    "model",
    "templates",
    "n_templates",
    "head",
    "shots",
    "train_images",
    "task",
    *METRICS,
    "images_computed",
    "images_cached",
    "images_failed",
    "seconds_per_1000_images",
    "embedding_seconds",
    "text_seconds",
    "fit_seconds",
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
    few_shot: FewShot | None = None

    @property
    def task(self) -> str:
        return self.rows[0]["task"] if self.rows else "single-label"

    def to_json(self) -> dict:
        return {
            "sort": self.sort,
            "labels": self.labels,
            "template_sets": {s.name: s.templates for s in self.template_sets},
            "rows": self.rows,
            **({"few_shot": self.few_shot.to_json()} if self.few_shot else {}),
        }

    @property
    def first_zero_shot(self) -> dict | None:
        """The best zero-shot row (scored on every image, unlike the probes' rows)."""
        return next((row for row in self.rows if row.get("head", ZERO_SHOT) == ZERO_SHOT), None)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(row["model"] for row in self.rows))

    def speed(self) -> list[dict]:
        """Per model, in run order: images embedded and from the cache, the image tower's seconds per
        1000 images, the whole image pass, the text towers of all sets and the probes' fits."""
        out = []
        for model in self.models:
            rows = [row for row in self.rows if row["model"] == model]
            out.append(
                {
                    "model": model,
                    "images_computed": rows[0]["images_computed"],
                    "images_cached": rows[0]["images_cached"],
                    "seconds_per_1000_images": rows[0]["seconds_per_1000_images"],
                    "embedding_seconds": rows[0]["embedding_seconds"],
                    "text_seconds": sum(row["text_seconds"] or 0.0 for row in rows),
                    "fit_seconds": sum(row["fit_seconds"] or 0.0 for row in rows) if self.few_shot else None,
                }
            )
        return out

    def curve(self, metric: str | None = None) -> dict[str, dict]:
        """Per model: the probe's ``metric`` for each k and zero-shot's on the same test images, by template set."""
        metric = metric or self.curve_metric
        if self.few_shot is None:
            return {}
        out = {}
        for model in self.models:
            probes = sorted(
                (r for r in self.rows if r["model"] == model and r["head"] != ZERO_SHOT), key=lambda r: r["shots"]
            )
            out[model] = {
                "shots": [r["shots"] for r in probes],
                "probe": [r.get(metric) for r in probes],
                "zero_shot": {name: m.get(metric) for name, m in self.few_shot.zero_shot.get(model, {}).items()},
            }
        return out

    @property
    def curve_metric(self) -> str:
        return self.sort if self.sort in METRICS else default_sort(self.task)

    def run_stats(self, out: str | None = None) -> RunStats:
        """The summary-line counts: images once, embeddings summed over the models."""
        per_model = {row["model"]: row for row in self.rows}.values()
        first = self.first_zero_shot or {"images_failed": 0, "counts": {"predictions": 0}}
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
    head: str | None = None,
    shots: Sequence[int] | None = None,
    test_size: float = 0.5,
    seed: int = 0,
    **embedder_options,
) -> Comparison:
    """Every (model, template set) on ``sources``, scored against ``truth``.

    ``labels`` (a list or a comma-separated string) or ``labels_file``; neither takes the truth's classes. ``models`` are model specs, backends or ready
    :class:`Embedder` objects (then ``embedder_options`` do not apply to them), or a mapping of
    row names to them. Metrics are
    :func:`evaluate`'s with its default task (multi-label when some truth image has other than
    one label), exactly as ``classify`` then ``evaluate`` give them. ``sort``: a metric
    (default ``accuracy``, or ``mAP`` for multi-label).

    ``head`` (a :mod:`~iconograph.learning.heads` kind, e.g. ``"logistic"``) and/or ``shots``
    (images per class, default 1, 2, 4, 8, 16) add a few-shot probe per model and k: fitted on k
    labelled images per class of the same cached embeddings, scored on a held-out, seeded split
    (``test_size`` of the labelled images; see :mod:`iconograph.evaluation.fewshot`), with
    zero-shot scored on the same test images in :attr:`Comparison.few_shot`.
    """
    sets = resolve_template_sets(templates, ensemble=ensemble)
    if head is not None or shots is not None:
        head = head or "logistic"
        shots = check_shots(head, DEFAULT_SHOTS if shots is None else shots, test_size)
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
    probe_items = _probe_items(items, truth_items) if head is not None else []
    probe_multi_label = is_multi_label_items(probe_items)
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
    few_shot = None
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
        model_rows = []
        if head is not None:
            vectors = {path: embedded.vectors[i] for i, path in enumerate(embedded.paths) if ok[i]}
            if few_shot is None:  # split once, on the first model's readable images: every model shares it
                labelled = [item for item in probe_items if item.path in vectors]
                test, train = few_shot_split(
                    labelled, shots, test_size=test_size, seed=seed, multi_label=probe_multi_label
                )
                few_shot = FewShot(
                    head,
                    shots,
                    seed,
                    test_size,
                    [i.path for i in test],
                    {k: [i.path for i in p] for k, p in train.items()},
                )
            needed = {*few_shot.test, *(path for part in few_shot.train.values() for path in part)}
            missing = sorted(needed - vectors.keys())
            if missing:
                raise SourceError(f"{missing[0]} could not be embedded by {name}: the few-shot split needs it")
            probes = probe_rows(vectors, train, test, head=head, multi_label=probe_multi_label, top_k=top_k)
            few_shot.zero_shot[str(name)] = {}
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
            if few_shot is not None:
                held_out = set(few_shot.test)
                on_test = evaluate([p for p in predictions if p.path in held_out], test, multi_label=probe_multi_label)
                few_shot.zero_shot[str(name)][s.name] = {
                    m: on_test.get(m) for m in (*METRICS, "counts") if m in on_test
                }
            model_rows.append(
                {
                    "templates": s.name,
                    "n_templates": len(s.templates),
                    "head": ZERO_SHOT,
                    "shots": None,
                    "train_images": None,
                    **metrics,
                    "text_seconds": text_seconds,
                    "fit_seconds": None,
                }
            )
        if head is not None:
            model_rows += [{"head": head, "templates": None, "n_templates": None, **probe} for probe in probes]
        for row in model_rows:
            rows.append(
                {
                    "model": str(name),
                    **row,
                    "images_computed": computed,
                    "images_cached": cached,
                    "images_failed": int((~ok).sum()),
                    "seconds_per_1000_images": 1000 * tower.seconds / computed if computed else None,
                    "embedding_seconds": seconds,
                    "text_seconds": row.get("text_seconds"),
                    "fit_seconds": row.get("fit_seconds"),
                }
            )
    sort = sort or default_sort(rows[0]["task"])
    return Comparison(sort_rows(rows, sort), sort, sets, classifiers[0].labels, few_shot)


def _probe_items(items: Sequence[Item], truth) -> list[Item]:
    """The source images that have truth labels, with them (and the truth's ``split`` column, if any)."""
    truth_items = {path_key(item.path): item for item in _items(truth)}
    out = []
    for item in items:
        found = truth_items.get(path_key(item.path))
        if found is not None and found.labels:
            out.append(Item(item.path, tuple(found.labels), found.meta))
    if len({label for item in out for label in item.labels}) < 2:
        raise OptionError("a few-shot probe needs labelled images of at least two classes in the sources")
    return out


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


def row_name(row: dict) -> str:
    """How charts and the per-class table name a row: ``model · template set`` or ``model · head k-shot``."""
    if row.get("head", ZERO_SHOT) == ZERO_SHOT:
        return f"{row['model']} · {row['templates']}"
    return f"{row['model']} · {row['head']} {row['shots']}-shot"


def print_table(comparison: Comparison, console=None) -> None:
    """The rows as a Rich table, best first by the sort metric."""
    from rich.console import Console
    from rich.table import Table

    metrics = [m for m in METRICS if any(m in row for row in comparison.rows)]
    n = comparison.first_zero_shot["counts"]["evaluated"] if comparison.rows else 0
    few_shot = comparison.few_shot
    title = f"{comparison.task} comparison ({n} images), sorted by {comparison.sort}"
    if few_shot is not None:
        title += f"; probes scored on {len(few_shot.test)} held-out images"
    table = Table(title=title)
    table.add_column("model")
    table.add_column("templates")
    table.add_column("n", justify="right")
    if few_shot is not None:
        table.add_column("head")
        table.add_column("shots", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right", style="bold" if metric == comparison.sort else None)
    table.add_column("s / 1000 img", justify="right")
    for row in comparison.rows:
        speed = row["seconds_per_1000_images"]
        probe = [row["head"], format_value(row["shots"])] if few_shot is not None else []
        table.add_row(
            row["model"],
            format_value(row["templates"]),
            format_value(row["n_templates"]),
            *probe,
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
    names = [row_name(r) for r in rows]
    values = [r.get(metric) or 0.0 for r in rows]
    models = comparison.models
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


def curve_chart(comparison: Comparison, metric: str | None = None) -> bytes:
    """The few-shot curve: per model the probe's ``metric`` against k (log scale), with the best
    zero-shot template set on the same held-out images as a dashed line in the model's colour."""
    from iconograph.evaluation.report.figures import _figure, _png, palette

    metric = metric or comparison.curve_metric
    figure = _figure(7, 4.2)
    axes = figure.add_subplot()
    for i, (model, curve) in enumerate(comparison.curve(metric).items()):
        color = palette(i)
        name = _short(model, 40)
        axes.plot(curve["shots"], curve["probe"], marker="o", color=color, label=f"{name}: {comparison.few_shot.head}")
        best = max(curve["zero_shot"].items(), key=lambda kv: kv[1] if kv[1] is not None else float("-inf"))
        if best[1] is not None:
            axes.axhline(
                best[1], color=color, linestyle="--", linewidth=1, label=f"{name}: zero-shot ({_short(best[0], 30)})"
            )
    axes.set_xscale("log", base=2)
    shots = comparison.few_shot.shots
    axes.set_xticks(shots, [str(k) for k in shots])
    axes.set_ylim(0, 1)
    axes.set_xlabel("labelled images per class (k)")
    axes.set_ylabel(metric)
    axes.set_title(f"few-shot {metric} on {len(comparison.few_shot.test)} held-out images")
    axes.legend(fontsize=7, loc="best")
    return _png(figure)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def render_report(comparison: Comparison, title: str = "iconograph comparison") -> str:
    """One self-contained HTML page: the sorted table, a bar chart per metric, the few-shot curve,
    per-class F1 of the best two, and the seconds per 1000 images of each model."""
    from iconograph.evaluation.report.html import environment

    metrics = [m for m in METRICS if any(m in row for row in comparison.rows)]
    charts = {m: base64.b64encode(bar_chart(comparison, m)).decode() for m in metrics}
    curve = base64.b64encode(curve_chart(comparison)).decode() if comparison.few_shot else None
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
            best_names=[row_name(row) for row in best],
            per_class=per_class,
            template_sets=comparison.template_sets,
            curve_chart=curve,
            curve_metric=comparison.curve_metric,
            curves=comparison.curve(),
            speed=comparison.speed(),
        )
    )
