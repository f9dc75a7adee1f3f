"""Masks as data: compressed COCO RLE (``pycocotools.mask``), polygons, PNG label maps.

An instance mask is stored as COCO's compressed run-length encoding, ``{"size": [h, w],
"counts": "<string>"}`` exactly as ``pycocotools.mask.encode`` gives it (its ``counts`` bytes
decoded as ASCII so the record is JSON), which is the form COCO result files and ``COCOeval``
read. Area and bounding box come from pycocotools (``area``, ``toBbox``), so they agree with
what ``COCOeval(iouType="segm")`` computes.

A semantic label map is a PNG of class indices: 0 is the background, class ``i`` of the class
list is ``i + 1`` (``classes.txt`` beside the PNGs names them, one per line). PNGs are 8-bit up to
255 classes, 16-bit above. (Polygons are not written: they lose holes and pixel exactness.)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

Rle = dict  # {"size": [h, w], "counts": str}


def encode(masks: np.ndarray) -> list[Rle]:
    """Compressed RLEs of a (n, h, w) (or one (h, w)) boolean / 0-1 array."""
    from pycocotools import mask as mask_util

    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"masks must be (n, h, w), not shape {masks.shape}")
    if not len(masks):
        return []
    # pycocotools wants (h, w, n) uint8 in Fortran order
    encoded = mask_util.encode(np.asfortranarray(np.moveaxis(masks.astype(np.uint8, copy=False), 0, -1)))
    return [normalise(rle) for rle in encoded]


def normalise(rle: dict) -> Rle:
    """``{"size": [h, w], "counts": str}`` from a compressed RLE whose counts may be bytes."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str):
        raise ValueError("an uncompressed RLE (counts as a list); read it with to_rle(segmentation, h, w)")
    height, width = (int(v) for v in rle["size"])
    return {"size": [height, width], "counts": counts}


def to_rle(segmentation, height: int | None = None, width: int | None = None) -> Rle:
    """A compressed RLE from any COCO ``segmentation``: compressed RLE, uncompressed RLE (counts a
    list) or polygons (a list of ``[x1, y1, x2, y2, ...]``, merged into one mask)."""
    from pycocotools import mask as mask_util

    if isinstance(segmentation, dict):
        if isinstance(segmentation.get("counts"), list):
            h, w = segmentation["size"]
            return normalise(mask_util.frPyObjects(segmentation, int(h), int(w)))
        return normalise(segmentation)
    if isinstance(segmentation, list):
        if height is None or width is None:
            raise ValueError("polygon segmentations need the image height and width")
        polygons = [[float(v) for v in polygon] for polygon in segmentation if len(polygon) >= 6]
        if not polygons:
            return encode(np.zeros((1, int(height), int(width)), bool))[0]
        return normalise(mask_util.merge(mask_util.frPyObjects(polygons, int(height), int(width))))
    raise ValueError(f"not a COCO segmentation: {type(segmentation).__name__}")


def _bytes(rles: Sequence[Rle]) -> list[dict]:
    return [{"size": list(r["size"]), "counts": r["counts"].encode("ascii")} for r in rles]


def decode(rles: Sequence[Rle]) -> np.ndarray:
    """(n, h, w) bool masks; all RLEs must have the same size."""
    from pycocotools import mask as mask_util

    rles = list(rles)
    if not rles:
        return np.zeros((0, 0, 0), bool)
    return np.moveaxis(mask_util.decode(_bytes(rles)), -1, 0).astype(bool)


def area(rles: Sequence[Rle]) -> np.ndarray:
    """Foreground pixels per mask (``pycocotools.mask.area``)."""
    from pycocotools import mask as mask_util

    return np.asarray(mask_util.area(_bytes(rles)), dtype=np.float64).reshape(-1) if rles else np.zeros(0)


def to_xyxy(rles: Sequence[Rle]) -> np.ndarray:
    """Tight boxes around the masks (``pycocotools.mask.toBbox``) as (n, 4) xyxy; an empty mask
    gives ``(0, 0, 0, 0)``."""
    from pycocotools import mask as mask_util

    if not rles:
        return np.zeros((0, 4))
    xywh = np.asarray(mask_util.toBbox(_bytes(rles)), dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def iou(a: Sequence[Rle], b: Sequence[Rle]) -> np.ndarray:
    """(len(a), len(b)) mask IoU (``pycocotools.mask.iou``, no crowd regions)."""
    from pycocotools import mask as mask_util

    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_util.iou(_bytes(a), _bytes(b), [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


# ---- semantic label maps -------------------------------------------------------------------


def label_map(
    rles: Sequence[Rle], class_id: np.ndarray, scores: np.ndarray | None, size: tuple[int, int]
) -> np.ndarray:
    """(h, w) class indices (0 background, class ``i`` as ``i + 1``); where masks overlap the
    higher-scoring one wins (later ones for ground truth)."""
    height, width = size
    result = np.zeros((height, width), np.int64)
    if not len(rles):
        return result
    order = np.arange(len(rles)) if scores is None else np.argsort(scores, kind="stable")
    masks = decode(rles)
    for i in order:
        result[masks[i]] = int(class_id[i]) + 1
    return result


def label_map_png(labels: np.ndarray) -> bytes:
    """PNG bytes of a label map: 8-bit (mode L) when it fits, else 16-bit (mode I;16)."""
    from PIL import Image

    labels = np.asarray(labels)
    if labels.max(initial=0) <= 255:
        image = Image.fromarray(labels.astype(np.uint8), mode="L")
    else:
        image = Image.fromarray(labels.astype(np.uint16), mode="I;16")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def read_label_map(path: str | Path) -> np.ndarray:
    """(h, w) int64 class indices from a label-map PNG (palette PNGs give their indices)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16", "I;16B", "1"):
            raise ValueError(f"{path}: a label map must be a single-channel PNG, not mode {image.mode}")
        return np.asarray(image).astype(np.int64)
