"""Detection evaluation report: precision-recall curves as PNG files (matplotlib) and one
self-contained HTML page (the same images embedded), next to each other."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from iconograph.engine.files import atomic_write_bytes, atomic_write_text
from iconograph.evaluation.report.html import environment

EXAMPLES = 3  # best and worst images shown in a mask report


def plot_pr_curves(metrics: dict, key: str = "pr_curves", prefix: str = "") -> dict[str, bytes]:
    """PNG bytes: ``pr_mean`` (class mean at IoU .50, .75, .50:.95) and ``pr_per_class`` (IoU .50)
    of ``metrics[key]`` (``mask_pr_curves`` for masks, named with ``prefix``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = metrics[key]
    what = "masks" if key.startswith("mask") else "boxes"
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
    figures[f"{prefix}pr_mean"] = finish(fig, ax, f"Precision-recall of {what}, mean over classes")

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, per_class in list(curves["per_class"].items())[:20]:
        ax.plot(recall, _defined(per_class["iou50"]), label=name)
    figures[f"{prefix}pr_per_class"] = finish(fig, ax, f"Precision-recall of {what} per class at IoU .50")
    return figures


def _defined(values: list[float]) -> list[float]:
    return [v if v >= 0 else float("nan") for v in values]  # -1: undefined (class without truth boxes)


def side_by_side(left, right, gap: int = 8):
    """Two PIL images next to each other on white (truth left, prediction right)."""
    from PIL import Image

    canvas = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + gap, 0))
    canvas.thumbnail((960, 480))
    return canvas


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def mask_examples(scored: list, count: int = EXAMPLES) -> list[dict]:
    """The best and worst ``count`` images of :func:`~iconograph.evaluation.detections.mask_image_quality`,
    each drawn truth | prediction: ``{"name", "path", "quality", "png"}``; unreadable images are skipped."""
    from iconograph.detection.annotate import draw_detections
    from iconograph.reading.decode import DecodeError, read_image

    chosen = [("best", row) for row in scored[:count]]
    chosen += [("worst", row) for row in scored[max(count, len(scored) - count) :][::-1]]
    examples = []
    for kind, (quality, truth, predicted) in chosen:
        try:
            image = read_image(truth.path).image
        except (DecodeError, OSError):
            continue
        pair = side_by_side(draw_detections(image, truth.detections), draw_detections(image, predicted.detections))
        name = f"{kind}_{sum(e['name'].startswith(kind) for e in examples) + 1}"
        examples.append({"name": name, "path": truth.path, "quality": quality, "png": png_bytes(pair)})
    return examples


def render_detection_report(metrics: dict, images: dict[str, bytes], title: str, examples=()) -> str:
    embedded = {name: base64.b64encode(data).decode("ascii") for name, data in images.items()}
    headline = {k: v for k, v in metrics.items() if isinstance(v, float) and not k.startswith("mask_")}
    mask_headline = {k: v for k, v in metrics.items() if isinstance(v, float) and k.startswith("mask_")}
    shown = [{**e, "png": base64.b64encode(e["png"]).decode("ascii")} for e in examples]
    return (
        environment()
        .get_template("detection.html.j2")
        .render(
            title=title,
            metrics=metrics,
            headline=headline,
            mask_headline=mask_headline,
            images=embedded,
            examples=shown,
        )
    )


def write_detection_report(
    metrics: dict, path: str | Path, title: str = "iconograph detection evaluation", scored: list | None = None
) -> Path:
    """Write ``path`` (HTML) and ``<stem>_pr_mean.png``, ``<stem>_pr_per_class.png`` beside it;
    with mask metrics also ``<stem>_mask_pr_*.png`` and, given the per-image ``scored`` list
    (:func:`~iconograph.evaluation.detections.mask_image_quality`), the best and worst images
    (truth | prediction) as ``<stem>_best_1.png`` ... ``<stem>_worst_1.png``."""
    path = Path(path)
    images = plot_pr_curves(metrics)
    if "mask_pr_curves" in metrics:
        images.update(plot_pr_curves(metrics, "mask_pr_curves", "mask_"))
    examples = mask_examples(scored) if scored else []
    for name, data in list(images.items()) + [(e["name"], e["png"]) for e in examples]:
        atomic_write_bytes(path.with_name(f"{path.stem}_{name}.png"), data)
    atomic_write_text(path, render_detection_report(metrics, images, title, examples))
    return path


def plot_class_iou(metrics: dict) -> bytes:
    """A horizontal bar per class: its IoU (semantic label maps), mean IoU as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, row["IoU"]) for name, row in metrics["per_class"].items() if row["IoU"] is not None]
    fig, ax = plt.subplots(figsize=(5.5, 0.35 * len(rows) + 1.2))
    ax.barh([name for name, _ in rows][::-1], [iou for _, iou in rows][::-1], color="#4363d8")
    ax.axvline(metrics["mIoU"], color="#e6194b", linestyle="--", label=f"mean IoU {metrics['mIoU']:.3f}")
    ax.set(xlim=(0, 1), xlabel="IoU", title="IoU per class")
    ax.legend(loc="lower right", fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def colour_map(labels) -> object:
    """A label map as a PIL image, one palette colour per class (0, the background, black)."""
    import numpy as np
    from PIL import Image

    from iconograph.detection.annotate import PALETTE

    colours = np.array([[0, 0, 0]] + [[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in PALETTE], np.uint8)
    index = np.where(labels == 0, 0, (labels - 1) % len(PALETTE) + 1)
    index = np.where(labels == 255, 0, index)  # the ignore value drawn as background
    return Image.fromarray(colours[index])


def write_label_map_report(
    metrics: dict, scored: list, path: str | Path, title: str = "iconograph segmentation evaluation"
) -> Path:
    """Write ``path`` (HTML) for semantic label maps: the metrics, IoU per class as a bar chart
    (``<stem>_class_iou.png``) and the best and worst images, truth | prediction, by their own mean
    IoU (``scored`` from :func:`~iconograph.evaluation.masks.label_map_image_quality`)."""
    path = Path(path)
    chosen = [("best", row) for row in scored[:EXAMPLES]]
    chosen += [("worst", row) for row in scored[max(EXAMPLES, len(scored) - EXAMPLES) :][::-1]]
    examples = []
    for kind, (quality, stem, truth, predicted) in chosen:
        name = f"{kind}_{sum(e['name'].startswith(kind) for e in examples) + 1}"
        pair = side_by_side(colour_map(truth), colour_map(predicted))
        examples.append({"name": name, "path": stem, "quality": quality, "png": png_bytes(pair)})
    images = {"class_iou": plot_class_iou(metrics)}
    for name, data in list(images.items()) + [(e["name"], e["png"]) for e in examples]:
        atomic_write_bytes(path.with_name(f"{path.stem}_{name}.png"), data)
    page = (
        environment()
        .get_template("label_maps.html.j2")
        .render(
            title=title,
            metrics=metrics,
            images={k: base64.b64encode(v).decode("ascii") for k, v in images.items()},
            examples=[{**e, "png": base64.b64encode(e["png"]).decode("ascii")} for e in examples],
        )
    )
    atomic_write_text(path, page)
    return path
