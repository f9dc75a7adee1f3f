"""Detection evaluation report: precision-recall curves as PNG files (matplotlib) and one
self-contained HTML page (the same images embedded), next to each other."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from iconograph.engine.files import atomic_write_bytes, atomic_write_text
from iconograph.evaluation.report.html import environment


def plot_pr_curves(metrics: dict) -> dict[str, bytes]:
    """PNG bytes: ``pr_mean`` (class mean at IoU .50, .75, .50:.95) and ``pr_per_class`` (IoU .50)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = metrics["pr_curves"]
    recall = curves["recall"]
    figures = {}

    def finish(fig, ax, title: str) -> bytes:
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize="small")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, label in (("iou50", "IoU .50"), ("iou75", "IoU .75"), ("iou50_95", "IoU .50:.95 (mean)")):
        ax.plot(recall, _defined(curves["mean"][key]), label=label)
    figures["pr_mean"] = finish(fig, ax, "Precision-recall, mean over classes")

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, per_class in list(curves["per_class"].items())[:20]:
        ax.plot(recall, _defined(per_class["iou50"]), label=name)
    figures["pr_per_class"] = finish(fig, ax, "Precision-recall per class at IoU .50")
    return figures


def _defined(values: list[float]) -> list[float]:
    return [v if v >= 0 else float("nan") for v in values]  # -1: undefined (class without truth boxes)


def render_detection_report(metrics: dict, images: dict[str, bytes], title: str) -> str:
    embedded = {name: base64.b64encode(data).decode("ascii") for name, data in images.items()}
    headline = {k: v for k, v in metrics.items() if isinstance(v, float)}
    return (
        environment()
        .get_template("detection.html.j2")
        .render(title=title, metrics=metrics, headline=headline, images=embedded)
    )


def write_detection_report(metrics: dict, path: str | Path, title: str = "iconograph detection evaluation") -> Path:
    """Write ``path`` (HTML) and ``<stem>_pr_mean.png``, ``<stem>_pr_per_class.png`` beside it."""
    path = Path(path)
    images = plot_pr_curves(metrics)
    for name, data in images.items():
        atomic_write_bytes(path.with_name(f"{path.stem}_{name}.png"), data)
    atomic_write_text(path, render_detection_report(metrics, images, title))
    return path
