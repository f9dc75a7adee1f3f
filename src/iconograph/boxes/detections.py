"""``Detections``: the boxes of one image as numpy arrays, with conversions to and from each format.

Coordinate convention (the one COCO and the OWL detectors use): continuous pixel coordinates of
the upright (EXIF-rotated) image, ``(0, 0)`` the top-left corner of the top-left pixel, so that a
box covering a whole ``W x H`` image is ``(0, 0, W, H)``.

* COCO ``bbox``: ``[x, y, width, height]`` in the same coordinates.
* Pascal VOC ``bndbox``: 1-based, inclusive integer pixel indices. Pixel ``i`` covers
  ``[i - 1, i]``, so ``xmin..xmax`` is ``x1 = xmin - 1, x2 = xmax`` (as detectron2 reads VOC).
* YOLO: ``class cx cy w h`` normalised by the image width and height.

Instance masks (optional, one per box) are compressed COCO RLEs (:mod:`iconograph.boxes.masks`);
JSONL records and COCO annotations carry them as ``"segmentation": {"size": [h, w], "counts":
"..."}``. VOC and YOLO have no masks: writing them keeps the boxes only.

The conversions are exact inverses of each other in floating point up to rounding noise far below
a pixel; VOC values are written as integers when they are within 1e-6 of one, so integer boxes
survive VOC -> COCO -> YOLO -> VOC unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from xml.etree import ElementTree as ET

import numpy as np

FLOAT_NOISE = 1e-6  # below a millionth of a pixel a coordinate is rounding noise, not information


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes of one image.

    ``xyxy`` (n, 4) float64 pixels; ``class_id`` (n,) int64 indices into ``classes``;
    ``scores`` (n,) float64, or None for ground truth; ``masks`` a tuple of n compressed COCO
    RLEs (``{"size": [h, w], "counts": str}``), or None when there are no masks.
    """

    xyxy: np.ndarray
    class_id: np.ndarray
    classes: tuple[str, ...]
    scores: np.ndarray | None = None
    masks: tuple[dict, ...] | None = None

    def __post_init__(self):
        xyxy = np.asarray(self.xyxy, dtype=np.float64).reshape(-1, 4)
        class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if len(class_id) != len(xyxy):
            raise ValueError(f"{len(xyxy)} boxes but {len(class_id)} class ids")
        if len(class_id) and (class_id.min() < 0 or class_id.max() >= len(self.classes)):
            raise ValueError(f"class ids must index the {len(self.classes)} classes")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "class_id", class_id)
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if len(scores) != len(xyxy):
                raise ValueError(f"{len(xyxy)} boxes but {len(scores)} scores")
            object.__setattr__(self, "scores", scores)
        if self.masks is not None:
            from iconograph.boxes.masks import normalise

            masks = tuple(normalise(m) for m in self.masks)
            if len(masks) != len(xyxy):
                raise ValueError(f"{len(xyxy)} boxes but {len(masks)} masks")
            object.__setattr__(self, "masks", masks)

    # ---- construction and views ---------------------------------------------------------

    @classmethod
    def empty(cls, classes: Sequence[str] = (), with_scores: bool = False, with_masks: bool = False) -> Detections:
        return cls(
            np.zeros((0, 4)),
            np.zeros(0, np.int64),
            tuple(classes),
            np.zeros(0) if with_scores else None,
            () if with_masks else None,
        )

    @classmethod
    def from_masks(
        cls,
        masks: np.ndarray,
        labels: Sequence[str],
        scores: Sequence[float] | np.ndarray | None = None,
        classes: Sequence[str] | None = None,
    ) -> Detections:
        """Instances from (n, h, w) boolean masks; each box is the tight box around its mask."""
        from iconograph.boxes import masks as rle

        encoded = rle.encode(np.asarray(masks).reshape(-1, *np.shape(masks)[-2:]))
        return cls.from_labels(rle.to_xyxy(encoded), labels, scores, classes, masks=encoded)

    @classmethod
    def from_labels(
        cls,
        xyxy: np.ndarray | Sequence[Sequence[float]],
        labels: Sequence[str],
        scores: Sequence[float] | np.ndarray | None = None,
        classes: Sequence[str] | None = None,
        masks: Sequence[dict] | None = None,
    ) -> Detections:
        """Boxes with class names; ``classes`` defaults to the names in order of appearance."""
        classes = tuple(classes) if classes is not None else tuple(dict.fromkeys(labels))
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted(set(labels) - index.keys())
        if unknown:
            raise ValueError(f"labels not among the classes: {', '.join(unknown)}")
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        return cls(boxes, [index[x] for x in labels], classes, scores, None if masks is None else tuple(masks))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> Detections:
        """A subset by boolean mask or integer indices (keeps the classes)."""
        index = np.asarray(index)
        scores = None if self.scores is None else self.scores[index]
        masks = None
        if self.masks is not None:
            positions = np.arange(len(self))[index].reshape(-1)
            masks = tuple(self.masks[i] for i in positions)
        return Detections(self.xyxy[index], self.class_id[index], self.classes, scores, masks)

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.class_id]

    @property
    def area(self) -> np.ndarray:
        """Mask areas in pixels when there are masks, else box areas."""
        if self.masks is not None:
            from iconograph.boxes.masks import area

            return area(self.masks)
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    def mask_array(self) -> np.ndarray:
        """(n, h, w) boolean masks (``pycocotools.mask.decode``)."""
        from iconograph.boxes.masks import decode

        if self.masks is None:
            raise ValueError("these detections have no masks")
        return decode(self.masks)

    def without_masks(self) -> Detections:
        return Detections(self.xyxy, self.class_id, self.classes, self.scores)

    def with_classes(self, classes: Sequence[str]) -> Detections:
        """The same boxes indexed into another class list (which must contain every label used)."""
        return Detections.from_labels(self.xyxy, self.labels, self.scores, classes, self.masks)

    def sorted(self) -> Detections:
        """By descending score (stable), or unchanged for ground truth."""
        if self.scores is None:
            return self
        return self[np.argsort(-self.scores, kind="stable")]

    def clip(self, width: float, height: float) -> Detections:
        xyxy = self.xyxy.copy()
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        return Detections(xyxy, self.class_id, self.classes, self.scores, self.masks)

    def concat(self, other: Detections) -> Detections:
        classes = tuple(dict.fromkeys(self.classes + other.classes))
        a, b = self.with_classes(classes), other.with_classes(classes)
        if (a.scores is None) != (b.scores is None):
            raise ValueError("cannot concatenate scored and unscored detections")
        scores = None if a.scores is None else np.concatenate([a.scores, b.scores])
        masks = None if a.masks is None or b.masks is None else a.masks + b.masks  # masks only when both have them
        xyxy, class_id = np.concatenate([a.xyxy, b.xyxy]), np.concatenate([a.class_id, b.class_id])
        return Detections(xyxy, class_id, classes, scores, masks)

    # ---- IoU and NMS (torchvision.ops) ----------------------------------------------------

    def iou(self, other: Detections) -> np.ndarray:
        """(len(self), len(other)) IoU matrix (``torchvision.ops.box_iou``)."""
        return box_iou(self.xyxy, other.xyxy)

    def nms(self, iou_threshold: float = 0.5, class_agnostic: bool = False) -> Detections:
        """Non-maximum suppression per class (``torchvision.ops.batched_nms``); sorted by score."""
        if self.scores is None:
            raise ValueError("NMS needs scores")
        keep = nms(self.xyxy, self.scores, None if class_agnostic else self.class_id, iou_threshold)
        return self[keep]

    # ---- records (the detect JSONL contract) -------------------------------------------------

    def to_records(self, digits: int | None = None) -> list[dict]:
        """``[{"label", "score", "xyxy"}]`` sorted by score, with ``"segmentation"`` (compressed
        RLE) when there are masks."""
        detections = self.sorted()
        records = []
        for i in range(len(detections)):
            box = [float(v) for v in detections.xyxy[i]]
            if digits is not None:
                box = [round(v, digits) for v in box]
            score = None if detections.scores is None else float(detections.scores[i])
            record = {"label": detections.classes[detections.class_id[i]], "score": score, "xyxy": box}
            if detections.masks is not None:
                record["segmentation"] = dict(detections.masks[i])
            records.append(record)
        return records

    @classmethod
    def from_records(cls, records: Iterable[dict], classes: Sequence[str] | None = None) -> Detections:
        records = list(records)
        labels = [str(r["label"]) for r in records]
        boxes = np.array([r["xyxy"] for r in records], dtype=np.float64).reshape(-1, 4)
        scored = any(r.get("score") is not None for r in records)
        scores = np.array([float(r.get("score") or 0.0) for r in records]) if scored else None
        if classes is not None:
            classes = tuple(classes) + tuple(x for x in dict.fromkeys(labels) if x not in set(classes))
        masks = None
        if records and all(r.get("segmentation") is not None for r in records):
            from iconograph.boxes.masks import to_rle

            masks = [to_rle(r["segmentation"]) for r in records]
        return cls.from_labels(boxes, labels, scores, classes, masks)

    # ---- COCO ---------------------------------------------------------------------------

    @classmethod
    def from_coco(
        cls,
        annotations: Iterable[dict],
        category_names: dict[int, str],
        classes: Sequence[str],
        height: int | None = None,
        width: int | None = None,
    ) -> Detections:
        """From one image's COCO annotations (``bbox = [x, y, w, h]``, optional ``score``; masks
        when every annotation has a ``segmentation``: RLE, or polygons given ``height``/``width``;
        a missing ``bbox`` is the mask's box)."""
        from iconograph.boxes.masks import to_rle, to_xyxy

        annotations = list(annotations)
        masks = None
        if annotations and all(a.get("segmentation") for a in annotations):
            masks = [to_rle(a["segmentation"], height, width) for a in annotations]
        if masks is not None and any("bbox" not in a for a in annotations):
            boxes = to_xyxy(masks)
        else:
            boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
            boxes[:, 2:] += boxes[:, :2]
        labels = [category_names[a["category_id"]] for a in annotations]
        scored = any("score" in a for a in annotations)
        scores = [float(a.get("score", 0.0)) for a in annotations] if scored else None
        return cls.from_labels(boxes, labels, scores, classes, masks)

    def to_coco(self, image_id: int, category_ids: Sequence[int], first_id: int = 1) -> list[dict]:
        """COCO annotations; ``category_ids[i]`` is the COCO id of ``classes[i]``; area is ``w * h``,
        or with masks the mask's pixel count, and ``segmentation`` the compressed RLE."""
        areas = self.area if self.masks is not None else None
        annotations = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(v) for v in self.xyxy[i])
            annotation = {
                "id": first_id + i,
                "image_id": image_id,
                "category_id": int(category_ids[self.class_id[i]]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1) if areas is None else float(areas[i]),
                "iscrowd": 0,
            }
            if self.masks is not None:
                annotation["segmentation"] = dict(self.masks[i])
            if self.scores is not None:
                annotation["score"] = float(self.scores[i])
            annotations.append(annotation)
        return annotations

    # ---- Pascal VOC ---------------------------------------------------------------------

    @classmethod
    def from_voc(cls, objects: Iterable[ET.Element], classes: Sequence[str] | None = None) -> Detections:
        """From ``<object>`` elements (``<name>``, ``<bndbox>``, optional ``<score>``)."""
        boxes, labels, scores = [], [], []
        for element in objects:
            box = element.find("bndbox")
            if box is None:
                raise ValueError("a VOC <object> without <bndbox>")
            xmin, ymin, xmax, ymax = (float(_text(box, tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([xmin - 1, ymin - 1, xmax, ymax])
            labels.append(_text(element, "name").strip())
            score = element.find("score")
            scores.append(None if score is None else float(score.text))
        scored = any(s is not None for s in scores)
        return cls.from_labels(
            np.array(boxes).reshape(-1, 4), labels, [s or 0.0 for s in scores] if scored else None, classes
        )

    def to_voc(self) -> list[ET.Element]:
        """``<object>`` elements; VOC has no sub-pixel boxes, so coordinates are written as integers
        when they are (within float noise), else with two decimals."""
        elements = []
        for i in range(len(self)):
            element = ET.Element("object")
            ET.SubElement(element, "name").text = self.classes[self.class_id[i]]
            ET.SubElement(element, "pose").text = "Unspecified"
            ET.SubElement(element, "truncated").text = "0"
            ET.SubElement(element, "difficult").text = "0"
            if self.scores is not None:
                ET.SubElement(element, "score").text = repr(float(self.scores[i]))
            box = ET.SubElement(element, "bndbox")
            x1, y1, x2, y2 = self.xyxy[i]
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1 + 1, y1 + 1, x2, y2)):
                ET.SubElement(box, tag).text = voc_number(value)
            elements.append(element)
        return elements

    # ---- YOLO ---------------------------------------------------------------------------

    @classmethod
    def from_yolo(cls, text: str, width: int, height: int, classes: Sequence[str]) -> Detections:
        """From a YOLO label file's text: ``class cx cy w h [score]`` per line, normalised."""
        rows = [line.split() for line in text.splitlines() if line.strip()]
        if any(len(row) not in (5, 6) for row in rows):
            raise ValueError("YOLO label lines must have 5 values (class cx cy w h) or 6 (with a score)")
        values = np.array([[float(v) for v in row[1:5]] for row in rows], dtype=np.float64).reshape(-1, 4)
        class_id = np.array([int(row[0]) for row in rows], dtype=np.int64)
        cx, cy, w, h = values[:, 0] * width, values[:, 1] * height, values[:, 2] * width, values[:, 3] * height
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        scored = any(len(row) == 6 for row in rows)
        scores = np.array([float(row[5]) if len(row) == 6 else 0.0 for row in rows]) if scored else None
        return cls(xyxy, class_id, classes, scores)

    def to_yolo(self, width: int, height: int) -> str:
        """YOLO label text; values are written with the shortest exact float form (``repr``)."""
        lines = []
        for i in range(len(self)):
            x1, y1, x2, y2 = self.xyxy[i]
            values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
            fields = [str(int(self.class_id[i]))] + [repr(float(v)) for v in values]
            if self.scores is not None:
                fields.append(repr(float(self.scores[i])))
            lines.append(" ".join(fields))
        return "".join(line + "\n" for line in lines)


def voc_number(value: float) -> str:
    nearest = round(float(value))
    if abs(value - nearest) <= FLOAT_NOISE:
        return str(int(nearest))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _text(element: ET.Element, tag: str) -> str:
    child = element.find(tag)
    if child is None or child.text is None:
        raise ValueError(f"VOC element <{element.tag}> has no <{tag}>")
    return child.text


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two (n, 4) / (m, 4) xyxy arrays (``torchvision.ops.box_iou``)."""
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    a = torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1, 4))
    return tv_box_iou(a, b).numpy()


def nms(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray | None, iou_threshold: float) -> np.ndarray:
    """Indices kept by (class-wise when ``class_id`` is given) NMS, by descending score."""
    import torch
    from torchvision.ops import batched_nms
    from torchvision.ops import nms as tv_nms

    boxes = torch.as_tensor(np.asarray(xyxy, dtype=np.float64).reshape(-1, 4))
    scores_t = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    if class_id is None:
        return tv_nms(boxes, scores_t, iou_threshold).numpy()
    return batched_nms(boxes, scores_t, torch.as_tensor(np.asarray(class_id)), iou_threshold).numpy()
