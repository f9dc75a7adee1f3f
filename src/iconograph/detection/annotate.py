"""Draw detections on their images (``torchvision.utils.draw_bounding_boxes``; masks, when the
detections have them, as semi-transparent fills with ``draw_segmentation_masks``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from iconograph.boxes import Detections
from iconograph.engine.files import atomic_write_bytes

PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#469990",
    "#9a6324",
)


def draw_detections(image, detections: Detections, width: int | None = None):
    """A copy of the RGB PIL ``image`` with boxes and ``label score`` captions drawn on it; masks
    filled at 40% opacity in their class colour under the box outlines."""
    import torch
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes

    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
    if not len(detections):
        return image.copy()
    labels = [
        label if detections.scores is None else f"{label} {score:.2f}"
        for label, score in zip(
            detections.labels, detections.scores if detections.scores is not None else [None] * len(detections)
        )
    ]
    colors = [PALETTE[i % len(PALETTE)] for i in detections.class_id]
    line = width or max(2, round(max(image.size) / 300))
    if detections.masks is not None:
        from torchvision.utils import draw_segmentation_masks

        masks = torch.from_numpy(detections.mask_array())
        if tuple(masks.shape[1:]) == tuple(pixels.shape[1:]):  # masks of another size are not drawn
            pixels = draw_segmentation_masks(pixels, masks, alpha=0.4, colors=colors)
    drawn = draw_bounding_boxes(
        pixels, torch.as_tensor(detections.xyxy, dtype=torch.float32), labels=labels, colors=colors, width=line
    )
    return Image.fromarray(drawn.permute(1, 2, 0).numpy())


def save_annotated(image, detections: Detections, path: str | Path) -> Path:
    """Write the annotated image atomically (format by suffix; JPEG quality 90)."""
    path = Path(path)
    buffer = io.BytesIO()
    drawn = draw_detections(image, detections)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        drawn.save(buffer, "JPEG", quality=90)
    else:
        drawn.save(buffer, "PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return path
