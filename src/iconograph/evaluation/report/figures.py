"""The report's plots, drawn with Matplotlib (``Figure`` objects, no pyplot state) into PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

MAX_MATRIX_CLASSES = 40
MAX_PR_PANELS = 24


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def heatmap(
    matrix: np.ndarray, rows: Sequence[str], columns: Sequence[str], title: str, xlabel: str, ylabel: str
) -> bytes:
    """Row-normalised colours, raw counts written in the cells when they fit."""
    matrix = np.asarray(matrix, dtype=np.float64)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.32 * max(len(rows), len(columns)) + 2)
    figure = _figure(size + 1, size)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(len(columns)), columns, rotation=90, fontsize=8)
    axes.set_yticks(range(len(rows)), rows, fontsize=8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if len(rows) <= 20 and len(columns) <= 20:
        for (i, j), value in np.ndenumerate(matrix):
            if value:
                colour = "white" if shares[i, j] > 0.6 else "black"
                axes.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, label="share of the row")
    return _png(figure)


def pr_curves(truth: np.ndarray, scores: np.ndarray, classes: Sequence[str], order: Sequence[int]) -> bytes:
    """Micro-average PR curve, then one small panel per class (the most frequent first)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    panels = [None, *list(order)[: MAX_PR_PANELS - 1]]
    columns = 4
    rows = int(np.ceil(len(panels) / columns))
    figure = _figure(3.0 * columns, 2.6 * rows)
    for n, k in enumerate(panels):
        axes = figure.add_subplot(rows, columns, n + 1)
        y, s = (truth.ravel(), scores.ravel()) if k is None else (truth[:, k], scores[:, k])
        if y.any():
            precision, recall, _ = precision_recall_curve(y, s)
            axes.step(recall, precision, where="post", color="C0" if k is None else "C1")
            ap = average_precision_score(y, s)
            name = "micro-average" if k is None else classes[k]
            axes.set_title(f"{name}\nAP {ap:.3f} · {int(y.sum())} positives", fontsize=8)
        else:
            axes.set_title(f"{classes[k]}: no positives", fontsize=8)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.tick_params(labelsize=7)
        axes.set_xlabel("recall", fontsize=7)
        axes.set_ylabel("precision", fontsize=7)
    return _png(figure)


def scatter_map(points: np.ndarray, colour_index: np.ndarray, legend: Sequence[str], title: str) -> bytes:
    figure = _figure(7, 6)
    axes = figure.add_subplot()
    other = colour_index < 0
    axes.scatter(points[other, 0], points[other, 1], s=8, c="#bbbbbb", label="other", linewidths=0)
    for i, name in enumerate(legend):
        chosen = colour_index == i
        axes.scatter(points[chosen, 0], points[chosen, 1], s=10, color=palette(i), label=name, linewidths=0)
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(fontsize=7, markerscale=1.5, loc="best", frameon=False)
    return _png(figure)


def palette(i: int) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return to_hex(colormaps["tab10"](i % 10))


def project_2d(vectors: np.ndarray, method: str, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates with UMAP, t-SNE or PCA; falls back to PCA when the data are too few.

    ``auto``: UMAP above 300 points, t-SNE above 30, else PCA.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if method == "auto":
        method = "umap" if n > 300 else "tsne" if n > 30 else "pca"
    if n < 3 or vectors.ndim != 2 or vectors.shape[1] < 2:
        return np.zeros((n, 2)), "PCA"
    if n < 5:
        method = "pca"
    if method == "umap":
        try:
            import umap
        except ImportError:
            method = "tsne"
        else:
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1)
            return reducer.fit_transform(vectors), "UMAP"
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, perplexity=min(30.0, (n - 1) / 3), random_state=seed, init="pca").fit_transform(vectors), "t-SNE"
    from sklearn.decomposition import PCA

    points = PCA(2, random_state=seed).fit_transform(vectors) if vectors.shape[1] >= 2 else np.zeros((n, 2))
    return points, "PCA"
