"""Detection evaluation equals an independent pycocotools run built from the original files."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.conftest import RACCOON, run_cli

STAT_NAMES = [
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
]


def reference_truth(label_of=lambda index: "raccoon") -> dict:
    """COCO truth from the VOC XML files, written here independently of iconograph: VOC pixels are
    1-based and inclusive, so bbox = [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]."""
    images, annotations, names = [], [], {}
    for image_id, xml_file in enumerate(sorted((RACCOON / "annotations").glob("*.xml")), start=1):
        root = ET.parse(xml_file).getroot()
        name = str(RACCOON / "images" / root.findtext("filename"))
        images.append(
            {
                "id": image_id,
                "file_name": name,
                "width": int(root.findtext("size/width")),
                "height": int(root.findtext("size/height")),
            }
        )
        for obj in root.iter("object"):
            xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
            label = label_of(image_id)
            names.setdefault(label, len(names) + 1)
            w, h = xmax - xmin + 1, ymax - ymin + 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": names[label],
                    "bbox": [xmin - 1, ymin - 1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": n} for n, i in names.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def predictions_from(truth: dict, seed: int = 0) -> list[dict]:
    """Detect-style records: jittered truth boxes, some dropped, false boxes added, random scores;
    a few images have no record, one is an error record, one label the truth does not know."""
    rng = np.random.default_rng(seed)
    names = {c["id"]: c["name"] for c in truth["categories"]}
    by_image = {}
    for ann in truth["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    records = []
    for img in truth["images"]:
        if rng.random() < 0.05:
            continue  # no prediction at all for this image
        if rng.random() < 0.02:
            records.append({"path": img["file_name"], "boxes": [], "error": "cannot decode image: broken"})
            continue
        boxes = []
        for ann in by_image.get(img["id"], []):
            if rng.random() < 0.15:
                continue  # missed
            x, y, w, h = ann["bbox"]
            jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
            x1, y1, x2, y2 = x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]
            boxes.append({"label": names[ann["category_id"]], "score": float(rng.random()), "xyxy": [x1, y1, x2, y2]})
        for _ in range(rng.integers(0, 4)):  # false positives
            x1, y1 = rng.random() * img["width"] * 0.8, rng.random() * img["height"] * 0.8
            size = rng.random() * 0.4 + 0.05
            label = rng.choice(list(names.values()) + ["tree"])
            boxes.append(
                {
                    "label": str(label),
                    "score": float(rng.random()),
                    "xyxy": [x1, y1, x1 + size * img["width"], y1 + size * img["height"]],
                }
            )
        records.append(
            {"path": img["file_name"], "boxes": boxes, "error": None, "width": img["width"], "height": img["height"]}
        )
    return records


def reference_metrics(truth: dict, records: list[dict]) -> tuple[np.ndarray, dict]:
    """pycocotools on the same data, per class by running COCOeval with one category at a time."""
    ids = {img["file_name"]: img["id"] for img in truth["images"]}
    cats = {c["name"]: c["id"] for c in truth["categories"]}
    dets = [
        {
            "image_id": ids[r["path"]],
            "category_id": cats[b["label"]],
            "score": b["score"],
            "bbox": [b["xyxy"][0], b["xyxy"][1], b["xyxy"][2] - b["xyxy"][0], b["xyxy"][3] - b["xyxy"][1]],
        }
        for r in records
        for b in r["boxes"]
        if b["label"] in cats
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(truth))
        gt.createIndex()
        dt = gt.loadRes(json.loads(json.dumps(dets)))
        overall = COCOeval(gt, dt, "bbox")
        overall.evaluate(), overall.accumulate(), overall.summarize()
        per_class = {}
        for name, cat_id in cats.items():
            single = COCOeval(gt, dt, "bbox")
            single.params.catIds = [cat_id]
            single.evaluate(), single.accumulate(), single.summarize()
            per_class[name] = (single.stats[0], single.stats[1], single.stats[2])
    return overall.stats, per_class


def write_jsonl(records, path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_evaluate_voc_truth_equals_pycocotools(tmp_path):
    truth = reference_truth()
    records = predictions_from(truth)
    preds = write_jsonl(records, tmp_path / "boxes.jsonl")
    result = run_cli(
        "evaluate",
        preds,
        "--truth",
        RACCOON / "annotations",
        "--json",
        tmp_path / "m.json",
        "--report",
        tmp_path / "report.html",
        check=True,
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    expected, per_class = reference_metrics(truth, records)
    assert [metrics[name] for name in STAT_NAMES] == pytest.approx(list(expected), abs=1e-6)
    assert 0.2 < metrics["mAP"] < 0.9 and metrics["AP50"] > metrics["AP75"]  # a meaningful, not a degenerate case
    assert metrics["per_class"]["raccoon"]["AP"] == pytest.approx(per_class["raccoon"][0], abs=1e-6)
    assert metrics["per_class"]["raccoon"]["support"] == 217
    counts = metrics["counts"]
    assert counts["truth"] == 200 and counts["evaluated"] == len(records) and counts["missing"] == 200 - len(records)
    assert counts["errors"] == sum(r["error"] is not None for r in records)
    assert counts["unknown_labels"] == sum(b["label"] == "tree" for r in records for b in r["boxes"]) > 0
    assert "mAP" in result.stdout

    curves = metrics["pr_curves"]
    assert len(curves["recall"]) == 101 and len(curves["per_class"]["raccoon"]["iou50"]) == 101
    html = (tmp_path / "report.html").read_text()
    assert "raccoon" in html and html.count("data:image/png;base64,") == 2
    for name in ("pr_mean", "pr_per_class"):
        assert (tmp_path / f"report_{name}.png").read_bytes().startswith(b"\x89PNG")


def test_evaluate_multiclass_coco_and_yolo_truth_equals_pycocotools(tmp_path):
    truth = reference_truth(label_of=lambda image_id: ("raccoon", "bandit", "cub")[image_id % 3])
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    records = predictions_from(truth, seed=3)
    preds = write_jsonl(records, tmp_path / "boxes.jsonl")
    expected, per_class = reference_metrics(truth, records)

    run_cli("evaluate", preds, "--truth", tmp_path / "truth.json", "--json", tmp_path / "coco.json", check=True)
    run_cli("convert-boxes", tmp_path / "truth.json", "--to", "yolo", "--out", tmp_path / "yolo", check=True)
    run_cli("evaluate", preds, "--truth", tmp_path / "yolo", "--json", tmp_path / "yolo.json", check=True)
    for name in ("coco.json", "yolo.json"):
        metrics = json.loads((tmp_path / name).read_text())
        assert [metrics[k] for k in STAT_NAMES] == pytest.approx(list(expected), abs=1e-6), name
        for label, (ap, ap50, ap75) in per_class.items():
            row = metrics["per_class"][label]
            assert (row["AP"], row["AP50"], row["AP75"]) == pytest.approx((ap, ap50, ap75), abs=1e-6), (name, label)


def test_evaluate_without_any_box_gives_zero(tmp_path):
    truth = reference_truth()
    records = [{"path": img["file_name"], "boxes": [], "error": None} for img in truth["images"][:10]]
    run_cli(
        "evaluate",
        write_jsonl(records, tmp_path / "p.jsonl"),
        "--truth",
        RACCOON / "annotations",
        "--json",
        tmp_path / "m.json",
        check=True,
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mAP"] == 0 and metrics["AR100"] == 0
