"""Detection metrics computed by pycocotools' ``COCOeval`` (the reference implementation).

Predictions (the ``detect`` JSONL, a COCO/VOC/YOLO folder with scores, or a :class:`BoxDataset`)
are matched to truth images by resolved path, then by file name when that is unique. Truth
images without a prediction record count as images where nothing was found; predicted images
that are not in the truth are left out and counted. Labels the truth does not know are counted
and ignored (COCO evaluates the truth's categories only).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iconograph.boxes.detections import Detections
from iconograph.boxes.formats import BoxDataset, ImageBoxes, read_boxes
from iconograph.reading.sources import path_key
from iconograph.reading.textfiles import SourceError, read_jsonl

SUMMARY_NAMES = (
    "mAP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def is_detection_file(path: str | Path) -> bool:
    """True when ``path`` is a JSONL whose first record has ``boxes`` (the detect output)."""
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".ndjson") or not path.is_file():
        return False
    try:
        return next(("boxes" in record for _, record in read_jsonl(path)), False)
    except SourceError:
        return False  # not readable as JSONL: whoever reads it as predictions says why


def read_detection_records(path: str | Path) -> tuple[BoxDataset, int]:
    """The detect JSONL as a dataset with scores, and the number of error records in it."""
    path = Path(path)
    images, labels, errors = [], [], 0
    for number, record in read_jsonl(path):
        try:
            detections = Detections.from_records(record.get("boxes") or [])
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{path}: line {number} is not a detection record ({exc})") from None
        errors += record.get("error") is not None
        size = (int(record.get("width") or 0), int(record.get("height") or 0))
        images.append(ImageBoxes(str(record["path"]), *size, detections, {"error": record.get("error")}))
        labels += detections.labels
    classes = tuple(dict.fromkeys(labels))
    return BoxDataset(images, classes), errors


def evaluate_detections(
    predictions: str | os.PathLike | BoxDataset,
    truth: str | os.PathLike | BoxDataset,
    *,
    truth_format: str | None = None,
    images: str | os.PathLike | None = None,
) -> dict:
    """COCO box metrics: ``mAP`` (AP@[.50:.95]), ``AP50``, ``AP75``, AP/AR by size, ``per_class``
    AP, and ``pr_curves`` (COCO's interpolated precision at 101 recall levels). When the truth
    and every predicted box have masks, the same from ``COCOeval(iouType="segm")`` under
    ``mask_`` names (``mask_mAP``, ``mask_AP50``, ...), ``mask_per_class`` and ``mask_pr_curves``."""
    errors = 0
    if not isinstance(predictions, BoxDataset):
        predictions, errors = read_detection_records(predictions)
    if not isinstance(truth, BoxDataset):
        truth = read_boxes(truth, truth_format, images=images)
    matched, unmatched = match_images(predictions, truth)
    unknown = sum(1 for img in matched.values() for label in img.detections.labels if label not in truth.classes)
    gt = truth.to_coco_dict()
    dets = _coco_results(matched, truth)
    coco_eval = run_cocoeval(gt, dets)
    metrics = {"task": "detection"}
    metrics.update(dict(zip(SUMMARY_NAMES, (float(v) for v in coco_eval.stats))))
    metrics["per_class"] = per_class_ap(coco_eval, truth.classes)
    metrics["pr_curves"] = pr_curves(coco_eval, truth.classes)
    if has_masks(truth) and matched and all(img.detections.masks is not None for img in matched.values()):
        segm_eval = run_cocoeval(gt, _coco_results(matched, truth, masks=True), "segm")
        metrics.update({f"mask_{name}": float(v) for name, v in zip(SUMMARY_NAMES, segm_eval.stats)})
        metrics["mask_per_class"] = per_class_ap(segm_eval, truth.classes)
        metrics["mask_pr_curves"] = pr_curves(segm_eval, truth.classes)
    metrics["counts"] = {
        "truth": len(truth),
        "truth_boxes": truth.box_count,
        "predictions": len(predictions),
        "evaluated": len(matched),
        "errors": errors,
        "missing": len(truth) - len(matched),
        "unmatched": unmatched,
        "detections": len(dets),
        "unknown_labels": unknown,
    }
    return metrics


def mask_image_quality(
    predictions: str | os.PathLike | BoxDataset,
    truth: str | os.PathLike | BoxDataset,
    *,
    truth_format: str | None = None,
    images: str | os.PathLike | None = None,
) -> list[tuple[float, ImageBoxes, ImageBoxes]]:
    """``(quality, truth image, predicted image)`` for every matched image with truth masks,
    best first: the mean over its truth masks of the highest IoU (``pycocotools.mask.iou``) with
    a predicted mask of the same label, 0 for a truth mask nothing of its label overlaps. A
    per-image measure for showing the best and worst images; the metrics are ``COCOeval``'s."""
    from iconograph.boxes.masks import iou

    if not isinstance(predictions, BoxDataset):
        predictions, _ = read_detection_records(predictions)
    if not isinstance(truth, BoxDataset):
        truth = read_boxes(truth, truth_format, images=images)
    matched, _ = match_images(predictions, truth)
    scored = []
    for index, predicted in matched.items():
        expected = truth.images[index]
        if not len(expected.detections) or expected.detections.masks is None:
            continue
        found = predicted.detections
        best = []
        for label, truth_mask in zip(expected.detections.labels, expected.detections.masks):
            same = [m for m, lab in zip(found.masks or [], found.labels) if lab == label]
            best.append(float(iou(same, [truth_mask]).max()) if same else 0.0)
        scored.append((float(np.mean(best)), expected, predicted))
    scored.sort(key=lambda row: (-row[0], row[1].path))
    return scored


def match_images(predictions: BoxDataset, truth: BoxDataset) -> tuple[dict[int, ImageBoxes], int]:
    """Truth image index -> predicted image (by resolved path, then by unique file name)."""
    by_key = {path_key(img.path): i for i, img in enumerate(truth.images)}
    names: dict[str, list[int]] = {}
    for i, img in enumerate(truth.images):
        names.setdefault(Path(img.path).name, []).append(i)
    matched: dict[int, ImageBoxes] = {}
    unmatched = 0
    for img in predictions.images:
        index = by_key.get(path_key(img.path))
        if index is None and len(names.get(Path(img.path).name, ())) == 1:
            index = names[Path(img.path).name][0]
        if index is None:
            unmatched += 1
        else:
            matched[index] = img
    return matched, unmatched


def has_masks(dataset: BoxDataset) -> bool:
    """Every image's boxes have masks, and there is at least one box."""
    return dataset.box_count > 0 and all(
        img.detections.masks is not None for img in dataset.images if len(img.detections)
    )


def _coco_results(matched: dict[int, ImageBoxes], truth: BoxDataset, masks: bool = False) -> list[dict]:
    """COCO result records for labels the truth knows (image ids are truth positions + 1); with
    ``masks``, each with its ``segmentation`` (compressed RLE)."""
    category = {name: i + 1 for i, name in enumerate(truth.classes)}
    results = []
    for index, img in sorted(matched.items()):
        for record in img.detections.to_coco(index + 1, [category.get(c, 0) for c in img.detections.classes]):
            if record["category_id"]:  # 0: a label the truth does not know
                keys = (
                    ("image_id", "category_id", "bbox", "segmentation")
                    if masks
                    else ("image_id", "category_id", "bbox")
                )
                results.append({**{k: record[k] for k in keys}, "score": record.get("score", 1.0)})
    return results


def run_cocoeval(gt: dict, dets: Sequence[dict], iou_type: str = "bbox"):
    """``COCOeval(..., iou_type)`` (``bbox`` or ``segm``): evaluate, accumulate, summarize (its
    printing silenced)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(list(dets)) if dets else _empty_results(coco_gt)
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _empty_results(coco_gt):
    # pycocotools' loadRes cannot take an empty list (it inspects the first record)
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": coco_gt.dataset["categories"],
        "annotations": [],
    }
    empty.createIndex()
    return empty


def _mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else None


def per_class_ap(coco_eval, classes: Sequence[str]) -> dict:
    """AP@[.50:.95], AP50, AP75 (area all, 100 detections) and truth box count per class;
    None where the class has no truth box (pycocotools' -1)."""
    precision = coco_eval.eval["precision"]  # [T, R, K, A, M]
    iou = coco_eval.params.iouThrs
    t50, t75 = int(np.argmin(np.abs(iou - 0.5))), int(np.argmin(np.abs(iou - 0.75)))
    support = {}
    for annotation in coco_eval.cocoGt.dataset["annotations"]:
        support[annotation["category_id"]] = support.get(annotation["category_id"], 0) + 1
    result = {}
    for k, (category_id, name) in enumerate(zip(coco_eval.params.catIds, classes)):
        p = precision[:, :, k, 0, -1]
        result[name] = {
            "AP": _mean_valid(p),
            "AP50": _mean_valid(p[t50]),
            "AP75": _mean_valid(p[t75]),
            "support": support.get(category_id, 0),
        }
    return result


def pr_curves(coco_eval, classes: Sequence[str]) -> dict:
    """Interpolated precision at COCO's 101 recall levels: per class at IoU .50 and .75, and the
    class mean at .50, .75 and averaged over .50:.95 (-1 where undefined, as pycocotools)."""
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
    iou = coco_eval.params.iouThrs
    t50, t75 = int(np.argmin(np.abs(iou - 0.5))), int(np.argmin(np.abs(iou - 0.75)))

    def class_mean(p: np.ndarray) -> list[float]:  # mean over classes where defined, per recall level
        masked = np.ma.masked_less(p, 0)
        return [float(v) if v is not np.ma.masked else -1.0 for v in masked.mean(axis=-1)]

    return {
        "recall": [float(r) for r in coco_eval.params.recThrs],
        "per_class": {
            name: {"iou50": precision[t50, :, k].tolist(), "iou75": precision[t75, :, k].tolist()}
            for k, name in enumerate(classes)
        },
        "mean": {
            "iou50": class_mean(precision[t50]),
            "iou75": class_mean(precision[t75]),
            "iou50_95": class_mean(np.ma.masked_less(precision, 0).mean(axis=0).filled(-1)),
        },
    }
