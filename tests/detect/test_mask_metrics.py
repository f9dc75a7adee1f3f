"""Mask metrics: COCO mask AP equals an independent pycocotools COCOeval(iouType="segm") run on
derived predictions (shifted, eroded, dropped, false masks); semantic IoU / mIoU / pixel accuracy
equal scikit-learn's on the same pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iconograph.boxes import BoxDataset, Detections, ImageBoxes
from iconograph.boxes.masks import label_map_png
from iconograph.evaluation.detections import evaluate_detections
from iconograph.evaluation.masks import evaluate_label_maps
from tests.conftest import run_cli

H, W = 48, 64


def truth_instances(seed=0):
    """Five images, each with 1-4 instances (ellipses with a hole in some) of two classes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    images = []
    for _ in range(5):
        masks, labels = [], []
        for _ in range(rng.integers(1, 5)):
            cy, cx, ry, rx = rng.integers(8, 40), rng.integers(8, 56), rng.integers(4, 12), rng.integers(4, 14)
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            if rng.random() < 0.4:
                mask &= ((yy - cy) / (ry / 3)) ** 2 + ((xx - cx) / (rx / 3)) ** 2 > 1  # a hole
            masks.append(mask)
            labels.append(["coin", "eagle"][rng.integers(0, 2)])
        images.append((np.stack(masks), labels))
    return images


def derive_predictions(truth, seed=1):
    """Per truth mask: kept, shifted by a few pixels, eroded, or dropped; plus false masks."""
    rng = np.random.default_rng(seed)
    predictions = []
    for masks, labels in truth:
        out_masks, out_labels, scores = [], [], []
        for mask, label in zip(masks, labels):
            kind = rng.integers(0, 4)
            if kind == 3:
                continue  # dropped
            if kind == 1:
                mask = np.roll(mask, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
            if kind == 2:  # eroded by one pixel in each direction
                mask = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
            out_masks.append(mask)
            out_labels.append(label)
            scores.append(float(rng.random()))
        for _ in range(rng.integers(0, 3)):  # false masks
            false = np.zeros((H, W), bool)
            y, x = rng.integers(0, H - 8), rng.integers(0, W - 8)
            false[y : y + 8, x : x + 8] = True
            out_masks.append(false)
            out_labels.append(["coin", "eagle"][rng.integers(0, 2)])
            scores.append(float(rng.random()))
        predictions.append((np.stack(out_masks) if out_masks else np.zeros((0, H, W), bool), out_labels, scores))
    return predictions


def reference_segm_ap(truth, predictions) -> list[float]:
    """COCOeval(iouType="segm") on COCO dicts built directly with pycocotools.mask."""
    import contextlib
    import io

    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    category = {"coin": 1, "eagle": 2}
    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "coin"}, {"id": 2, "name": "eagle"}]}
    dets = []
    for image_id, ((masks, labels), (pmasks, plabels, scores)) in enumerate(zip(truth, predictions), start=1):
        gt["images"].append({"id": image_id, "width": W, "height": H})
        for mask, label in zip(masks, labels):
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": category[label],
                    "segmentation": rle,
                    "area": float(mask_util.area(rle)),
                    "bbox": list(mask_util.toBbox(rle)),
                    "iscrowd": 0,
                }
            )
        for mask, label, score in zip(pmasks, plabels, scores):
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            dets.append({"image_id": image_id, "category_id": category[label], "segmentation": rle, "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluation = COCOeval(coco_gt, coco_gt.loadRes(dets), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(v) for v in evaluation.stats]


def test_mask_ap_equals_pycocotools_segm(tmp_path):
    truth = truth_instances()
    predictions = derive_predictions(truth)
    paths = [str(tmp_path / f"img{i}.png") for i in range(len(truth))]
    dataset = BoxDataset(
        [ImageBoxes(p, W, H, Detections.from_masks(m, labels)) for p, (m, labels) in zip(paths, truth)],
        ("coin", "eagle"),
    )
    dataset.write_coco(tmp_path / "truth.json")
    with open(tmp_path / "pred.jsonl", "w") as handle:
        for path, (masks, labels, scores) in zip(paths, predictions):
            detections = Detections.from_masks(masks, labels, scores, classes=("coin", "eagle"))
            record = {"path": path, "boxes": detections.to_records(), "error": None, "width": W, "height": H}
            handle.write(json.dumps(record) + "\n")

    metrics = evaluate_detections(tmp_path / "pred.jsonl", tmp_path / "truth.json")
    reference = reference_segm_ap(truth, predictions)
    names = ["mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100"]
    for name, value in zip(names, reference):
        assert metrics[f"mask_{name}"] == pytest.approx(value, abs=1e-6), name
    assert 0.05 < metrics["mask_mAP"] < 0.95  # neither trivial nor empty
    assert metrics["mask_mAP"] != metrics["mAP"]  # box and mask AP differ on eroded and holed masks

    result = run_cli(
        "evaluate", tmp_path / "pred.jsonl", "--truth", tmp_path / "truth.json", "--json", tmp_path / "m.json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "m.json").read_text())["mask_mAP"] == pytest.approx(reference[0], abs=1e-6)


def test_semantic_iou_equals_scikit_learn(tmp_path):
    from sklearn.metrics import accuracy_score, jaccard_score

    rng = np.random.default_rng(0)
    (tmp_path / "truth").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "truth" / "classes.txt").write_text("coin\neagle\nowl\n")
    all_truth, all_pred = [], []
    for i in range(4):
        truth = rng.integers(0, 4, (H, W))
        truth[:3] = 255  # an ignored border
        pred = np.where(rng.random((H, W)) < 0.7, truth, rng.integers(0, 4, (H, W)))
        pred[pred == 255] = 0
        (tmp_path / "truth" / f"m{i}.png").write_bytes(label_map_png(truth))
        (tmp_path / "pred" / f"m{i}.png").write_bytes(label_map_png(pred))
        keep = truth != 255
        all_truth.append(truth[keep])
        all_pred.append(pred[keep])
    (tmp_path / "pred" / "extra.png").write_bytes(label_map_png(np.zeros((H, W), int)))
    t, p = np.concatenate(all_truth), np.concatenate(all_pred)

    metrics = evaluate_label_maps(tmp_path / "pred", tmp_path / "truth")
    reference = jaccard_score(t, p, labels=[0, 1, 2, 3], average=None)
    assert [metrics["per_class"][c]["IoU"] for c in ("background", "coin", "eagle", "owl")] == pytest.approx(
        reference.tolist(), abs=1e-12
    )
    assert metrics["mIoU"] == pytest.approx(reference.mean(), abs=1e-12)
    assert metrics["pixel_accuracy"] == pytest.approx(accuracy_score(t, p), abs=1e-12)
    assert metrics["counts"]["evaluated"] == 4

    result = run_cli("evaluate", tmp_path / "pred", "--truth", tmp_path / "truth", "--json", tmp_path / "s.json")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "s.json").read_text())["mIoU"] == pytest.approx(reference.mean(), abs=1e-12)


def write_instance_case(tmp_path):
    """The derived-prediction case on disk: images, COCO truth with masks, a segment JSONL."""
    from PIL import Image

    truth, predictions = truth_instances(), derive_predictions(truth_instances())
    paths = [str(tmp_path / f"img{i}.png") for i in range(len(truth))]
    for i, path in enumerate(paths):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (H, W, 3), np.uint8)).save(path)
    BoxDataset(
        [ImageBoxes(p, W, H, Detections.from_masks(m, labels)) for p, (m, labels) in zip(paths, truth)],
        ("coin", "eagle"),
    ).write_coco(tmp_path / "truth.json")
    with open(tmp_path / "pred.jsonl", "w") as handle:
        for path, (masks, labels, scores) in zip(paths, predictions):
            detections = Detections.from_masks(masks, labels, scores, classes=("coin", "eagle"))
            handle.write(json.dumps({"path": path, "boxes": detections.to_records(), "error": None}) + "\n")
    return truth, predictions, paths


def test_mask_report_ranks_images_by_their_own_mask_iou(tmp_path):
    from iconograph.evaluation.detections import mask_image_quality

    truth, predictions, paths = write_instance_case(tmp_path)
    expected = {}
    for path, (masks, labels), (pmasks, plabels, _) in zip(paths, truth, predictions):
        best = []
        for mask, label in zip(masks, labels):
            ious = [(mask & p).sum() / (mask | p).sum() for p, lab in zip(pmasks, plabels) if lab == label]
            best.append(max(ious, default=0.0))
        expected[path] = float(np.mean(best))
    scored = mask_image_quality(tmp_path / "pred.jsonl", tmp_path / "truth.json")
    assert {t.path: q for q, t, _ in scored} == pytest.approx(expected, abs=1e-9)
    assert [q for q, _, _ in scored] == sorted(expected.values(), reverse=True)

    report = tmp_path / "report" / "masks.html"
    result = run_cli("evaluate", tmp_path / "pred.jsonl", "--truth", tmp_path / "truth.json", "--report", report)
    assert result.returncode == 0, result.stderr
    page = report.read_text()
    metrics = evaluate_detections(tmp_path / "pred.jsonl", tmp_path / "truth.json")
    assert f"{metrics['mask_mAP']:.4f}" in page and "COCO mask metrics" in page
    names = sorted(p.name for p in report.parent.glob("*.png"))
    assert names == sorted(
        ["masks_pr_mean.png", "masks_pr_per_class.png", "masks_mask_pr_mean.png", "masks_mask_pr_per_class.png"]
        + ["masks_best_1.png", "masks_best_2.png", "masks_best_3.png", "masks_worst_1.png", "masks_worst_2.png"]
    )  # 5 images: the best three, then the two others worst first
    worst = max(expected, key=lambda p: (-expected[p], p))
    assert f"worst_1 · {worst} · quality {expected[worst]:.3f}" in page


def test_label_map_report_shows_class_iou_and_the_worst_image(tmp_path):
    from sklearn.metrics import jaccard_score

    from iconograph.evaluation.masks import label_map_image_quality

    rng = np.random.default_rng(3)
    for folder in ("truth", "pred"):
        (tmp_path / folder).mkdir()
    expected = {}
    for i, agreement in enumerate((0.95, 0.5, 0.8)):
        truth = rng.integers(0, 3, (H, W))
        pred = np.where(rng.random((H, W)) < agreement, truth, rng.integers(0, 3, (H, W)))
        (tmp_path / "truth" / f"m{i}.png").write_bytes(label_map_png(truth))
        (tmp_path / "pred" / f"m{i}.png").write_bytes(label_map_png(pred))
        expected[f"m{i}"] = jaccard_score(truth.ravel(), pred.ravel(), average="macro")
    scored = label_map_image_quality(tmp_path / "pred", tmp_path / "truth")
    assert [stem for _, stem, _, _ in scored] == ["m0", "m2", "m1"]
    assert {stem: q for q, stem, _, _ in scored} == pytest.approx(expected, abs=1e-12)

    report = tmp_path / "maps.html"
    result = run_cli("evaluate", tmp_path / "pred", "--truth", tmp_path / "truth", "--report", report)
    assert result.returncode == 0, result.stderr
    page = report.read_text()
    metrics = evaluate_label_maps(tmp_path / "pred", tmp_path / "truth")
    assert f"{metrics['mIoU']:.4f}" in page
    for name, row in metrics["per_class"].items():
        assert f"<td>{name}</td><td>{row['IoU']:.4f}</td><td>{row['support']}</td>" in page
    assert (tmp_path / "maps_class_iou.png").stat().st_size > 1000
    assert f"best_1 · m0 · mean IoU {expected['m0']:.3f}" in page
