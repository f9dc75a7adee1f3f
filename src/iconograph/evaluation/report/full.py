"""The full evaluation report: one self-contained HTML file (plots and thumbnails embedded as
base64) plus the plots as PNG files in ``<name>_files/`` beside it.

Sections: headline metrics · per-class table (sortable) · confusion matrix (single-label) ·
precision-recall curves · best and worst images by sample F1 · agreement matrix (true label x
predicted label, counted per image) · embedding map (UMAP / t-SNE / PCA, hover for thumbnails).

Scores come from the predictions file: a label an image's record does not list scores 0, so
the curves of thresholded or top-k output are lower bounds, as in ``evaluate``'s mAP.
The embedding map uses image embeddings when an embedder is given, else the score vectors.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from iconograph.classification.decisions import l2_normalize
from iconograph.classification.results import Prediction, read_predictions
from iconograph.engine.files import atomic_directory, atomic_write_bytes, atomic_write_text
from iconograph.evaluation.metrics import Matched, match, metrics_of
from iconograph.evaluation.report import figures
from iconograph.reading.sources import Item, path_key

EXAMPLES = 12
MAX_MAP_POINTS = 1500
THUMB_SIZE = 96
PLOT_NAMES = ("confusion", "pr_curves", "agreement", "embedding_map")  # <name>.png in <stem>_files/


def write_full_report(
    predictions: str | os.PathLike | Sequence[Prediction],
    truth: str | os.PathLike | Sequence[Item] | Mapping[str, Sequence[str]],
    out: str | os.PathLike,
    *,
    metrics: dict | None = None,
    embedder=None,
    embeddings: np.ndarray | None = None,
    map_method: str = "auto",
    title: str = "iconograph evaluation",
    multi_label: bool | None = None,
    max_map_points: int = MAX_MAP_POINTS,
    examples: int = EXAMPLES,
) -> Path:
    """Write ``out`` (HTML) and ``<out stem>_files/*.png``; return the HTML path.

    ``embeddings``: one row per prediction (else ``embedder`` embeds the images, else the
    score vectors are mapped).
    """
    out = Path(out)
    if isinstance(predictions, (str, os.PathLike)):
        predictions = read_predictions(predictions)
    predictions = list(predictions)
    matched = match(predictions, truth, multi_label=multi_label)
    metrics = metrics or metrics_of(matched)
    multi = matched.multi_label
    if embeddings is not None:
        rows = {path_key(p.path): i for i, p in enumerate(predictions)}
        embeddings = np.asarray(embeddings)[[rows[path_key(p.path)] for p in matched.predictions]]
    plots: dict[str, bytes] = {}
    context = {
        "title": title,
        "metrics": metrics,
        "headline": {k: v for k, v in metrics.items() if isinstance(v, float)},
        "per_class": _per_class_rows(metrics, matched),
        "notes": [],
    }
    order = list(np.argsort(-matched.truth.sum(axis=0), kind="stable"))
    top = order[: figures.MAX_MATRIX_CLASSES]
    names = [matched.classes[i] for i in top]
    if not multi and metrics.get("confusion"):
        confusion = metrics["confusion"]
        keep = [i for i, label in enumerate(confusion["labels"]) if label in names or label == "(none)"]
        matrix = np.asarray(confusion["matrix"])[np.ix_(keep, keep)]
        labels = [confusion["labels"][i] for i in keep]
        plots["confusion"] = figures.heatmap(
            matrix, labels, labels, "Confusion matrix", "predicted label", "true label"
        )
    plots["pr_curves"] = figures.pr_curves(matched.truth, matched.scores, matched.classes, order)
    agreement = matched.truth[:, top].T.astype(np.int64) @ matched.predicted[:, top].astype(np.int64)
    plots["agreement"] = figures.heatmap(
        agreement,
        names,
        names,
        "Agreement: images with true label (row) and predicted label (column)",
        "predicted label",
        "true label",
    )
    if len(matched.classes) > len(top):
        context["notes"].append(
            f"Matrices and PR panels show the {len(top)} most frequent of {len(matched.classes)} classes."
        )
    map_context, plots["embedding_map"] = _embedding_map(
        matched, embeddings, embedder, map_method, max_map_points, context["notes"]
    )
    context["map"] = map_context
    context["best"], context["worst"] = _examples(matched, examples)
    context["plots"] = {name: base64.b64encode(png).decode() for name, png in plots.items()}
    files = out.with_name(f"{out.stem}_files")
    with atomic_directory(files, _is_plot) as folder:  # a plot of an earlier report never survives
        for name, png in plots.items():
            atomic_write_bytes(folder / f"{name}.png", png)
    context["files_dir"] = files.name
    atomic_write_text(out, _render(context))
    return out


def _is_plot(entry: Path) -> bool:
    return entry.suffix == ".png" and entry.stem in PLOT_NAMES


def _render(context: dict) -> str:
    from iconograph.evaluation.report.html import environment

    return environment().get_template("full_report.html.j2").render(**context)


def _per_class_rows(metrics: dict, matched: Matched) -> list[dict]:
    from sklearn.metrics import average_precision_score

    rows = []
    for i, label in enumerate(matched.classes):
        stats = metrics["per_class"].get(label, {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0})
        positives = matched.truth[:, i]
        ap = float(average_precision_score(positives, matched.scores[:, i])) if positives.any() else None
        rows.append({"label": label, **stats, "ap": ap})
    return rows


def _thumbnail(path: str, size: int = THUMB_SIZE) -> str | None:
    from iconograph.reading.decode import DecodeError, read_image

    try:
        image = read_image(path).image
    except DecodeError:
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _examples(matched: Matched, count: int) -> tuple[list[dict], list[dict]]:
    """Best: highest sample F1, most confident first. Worst: lowest F1, unreadable images and then the
    most confident mistakes first."""
    f1 = matched.sample_f1
    confidence = matched.scores.max(axis=1) if matched.scores.size else np.zeros(len(f1))
    failed = np.array([p.error is not None for p in matched.predictions])
    best = np.lexsort((-confidence, -f1))[:count]
    worst = np.lexsort((-confidence, ~failed, f1))[:count]

    def card(i: int) -> dict:
        p = matched.predictions[i]
        return {
            "path": p.path,
            "name": Path(p.path).name,
            "thumb": _thumbnail(p.path, 128),
            "truth": list(matched.truth_labels[i]),
            "predicted": [f"{ls.label} {ls.score:.2f}" for ls in p.labels[:5]],
            "f1": float(f1[i]),
            "error": p.error,
        }

    return [card(i) for i in best], [card(i) for i in worst if f1[i] < 1.0]


def _embedding_map(matched: Matched, embeddings, embedder, method: str, max_points: int, notes: list):
    readable = np.array([i for i, p in enumerate(matched.predictions) if p.error is None], dtype=int)
    n = len(readable)
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(readable, size=max_points, replace=False)) if n > max_points else readable
    if n > max_points:
        notes.append(f"The embedding map shows {max_points} of {n} readable images, drawn at random.")
    source = "score vectors"
    vectors = matched.scores[chosen]
    if embeddings is not None:
        vectors, source = embeddings[chosen], "image embeddings"
    elif embedder is not None:
        result = embedder.embed_images([matched.predictions[i].path for i in chosen])
        ok = result.ok
        chosen, vectors, source = chosen[ok], result.vectors[ok], "image embeddings"
    if vectors.shape[0] and embeddings is None and source == "image embeddings":
        vectors = l2_normalize(vectors)
    points, method_name = figures.project_2d(vectors, method)
    first_label = [matched.truth_labels[i][0] if matched.truth_labels[i] else "(none)" for i in chosen]
    counts: dict[str, int] = {}
    for label in first_label:
        counts[label] = counts.get(label, 0) + 1
    legend = sorted(counts, key=lambda label: (-counts[label], label))[:10]
    colour_index = np.array([legend.index(label) if label in legend else -1 for label in first_label])
    png = figures.scatter_map(points, colour_index, legend, f"{method_name} of {source}, coloured by true label")
    span = np.ptp(points, axis=0) if len(points) else np.ones(2)
    low = points.min(axis=0) if len(points) else np.zeros(2)
    unit = (points - low) / np.where(span > 0, span, 1)
    records = [
        {
            "x": round(float(10 + 580 * unit[j, 0]), 2),
            "y": round(float(10 + 430 * (1 - unit[j, 1])), 2),
            "c": figures.palette(int(colour_index[j])) if colour_index[j] >= 0 else "#bbbbbb",
            "t": _thumbnail(matched.predictions[i].path, 80),
            "p": Path(matched.predictions[i].path).name,
            "truth": ", ".join(matched.truth_labels[i]),
            "pred": ", ".join(ls.label for ls in matched.predictions[i].labels[:3]),
        }
        for j, i in enumerate(chosen)
    ]
    legend_items = [{"label": label, "colour": figures.palette(i)} for i, label in enumerate(legend)]
    return {"method": method_name, "source": source, "points": records, "legend": legend_items}, png
