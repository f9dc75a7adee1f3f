"""Regions of a collection's images: the boxes and masks of a ``detect`` or ``segment`` JSONL, kept
with the collection so that the review page draws them on the detail view.

One Lance table per collection (``search_<name>_regions``: ``path``, ``boxes`` as the records'
JSON), upserted by path (``merge_insert``), so attaching a newer detection run replaces what an
image had and leaves the other images alone. Masks stay compressed COCO RLE in the table; the
page gets them as one transparent PNG per image (:func:`overlay_png`, drawn with the annotate
palette), not as RLE to decode in JavaScript.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from iconograph.reading.textfiles import SourceError, read_jsonl

OVERLAY_ALPHA = 110  # of 255: masks are seen through


@dataclass
class AttachReport:
    attached: int  # images whose regions were stored
    boxes: int
    unknown: int  # records whose image is not in the collection
    failed: int  # error records (nothing to attach)


class RegionTable:
    def __init__(self, collection):
        self.collection = collection
        self.uri = collection.store.lance_uri(f"search_{collection.name}_regions")

    def dataset(self):
        import lance

        try:
            return lance.dataset(self.uri, **self.collection.store.lance_options())
        except (ValueError, OSError):  # "Dataset at path ... was not found"
            return None

    def attach(self, path: str | os.PathLike) -> AttachReport:
        """Store the regions of every record of a detect/segment JSONL whose image is in the
        collection (matched as :meth:`SearchCollection.key` matches paths)."""
        from iconograph.search.collection import CollectionError

        rows: dict[str, list[dict]] = {}
        unknown = failed = 0
        for number, record in read_jsonl(path):
            if "boxes" not in record or "path" not in record:
                raise SourceError(f"{path}: line {number} is not a detect or segment record (no path or boxes)")
            if record.get("error") is not None:
                failed += 1
                continue
            try:
                key = self.collection.key(str(record["path"]))
            except CollectionError:
                unknown += 1
                continue
            rows[key] = [_region(box, path, number) for box in record["boxes"] or []]
        if rows:
            self._upsert(rows)
        return AttachReport(len(rows), sum(map(len, rows.values())), unknown, failed)

    def _upsert(self, rows: dict[str, list[dict]]) -> None:
        import lance

        table = pa.table(
            {
                "path": pa.array(list(rows), pa.string()),
                "boxes": pa.array([json.dumps(b, ensure_ascii=False) for b in rows.values()], pa.string()),
            }
        )
        dataset = self.dataset()
        if dataset is None:
            lance.write_dataset(table, self.uri, **self.collection.store.lance_options())
        else:
            dataset.merge_insert("path").when_matched_update_all().when_not_matched_insert_all().execute(table)

    def of(self, key: str) -> list[dict]:
        """The regions of one item (``label``, ``score``, ``xyxy``, and ``segmentation`` with masks)."""
        from iconograph.search.vectors import sql_string

        dataset = self.dataset()
        if dataset is None:
            return []
        found = dataset.to_table(columns=["boxes"], filter=f"path = {sql_string(key)}").column("boxes").to_pylist()
        return json.loads(found[0]) if found else []


def _region(box: dict, path, number: int) -> dict:
    """One box of a record, checked as every label and score that reaches the page is: the
    shared label rule (:func:`~iconograph.reading.sources.clean_label`), a finite score in [0, 1]
    or none, four finite coordinates (NaN or infinity would not even serialise as JSON)."""
    from iconograph.reading.sources import clean_label

    try:
        label = clean_label(str(box["label"]))
        xyxy = [float(v) for v in box["xyxy"]]
        score = None if box.get("score") is None else float(box["score"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"{path}: line {number} has a box without a usable label and xyxy ({exc})") from None
    if not label or len(xyxy) != 4 or not all(math.isfinite(v) for v in xyxy):
        raise SourceError(f"{path}: line {number} has a box without a label or with a bad xyxy")
    if score is not None and not (math.isfinite(score) and 0 <= score <= 1):
        raise SourceError(f"{path}: line {number} has a score outside [0, 1]: {score}")
    region = {"label": label, "score": score, "xyxy": xyxy}
    if box.get("segmentation") is not None:
        region["segmentation"] = box["segmentation"]
    return region


def public_regions(regions: list[dict]) -> list[dict]:
    """What the page gets per region: label, score, box, and whether a mask is drawn."""
    return [{"label": r["label"], "score": r["score"], "xyxy": r["xyxy"], "mask": "segmentation" in r} for r in regions]


def overlay_png(regions: list[dict]) -> bytes | None:
    """The masks of one image as a transparent RGBA PNG of the image's size (the first region in
    the list on top, each class in its annotate colour), or None when no region has a mask."""
    from PIL import Image

    from iconograph.boxes.masks import decode
    from iconograph.detection.annotate import PALETTE

    masked = [r for r in regions if r.get("segmentation")]
    if not masked:
        return None
    height, width = masked[0]["segmentation"]["size"]
    pixels = np.zeros((height, width, 4), np.uint8)
    classes = list(dict.fromkeys(r["label"] for r in regions))
    for region in reversed(masked):  # earlier (higher-scored) regions drawn last, on top
        mask = decode([region["segmentation"]])[0]
        if mask.shape != (height, width):
            continue
        colour = PALETTE[classes.index(region["label"]) % len(PALETTE)]
        pixels[mask] = [int(colour[i : i + 2], 16) for i in (1, 3, 5)] + [OVERLAY_ALPHA]
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()
