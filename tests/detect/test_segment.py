"""segment: SAM masks for box prompts equal transformers' own (processor, model, post_process_masks,
best mask by predicted IoU); cache keyed by image and prompts; error records; output formats."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import iconograph as ig
from iconograph.boxes import BoxDataset, Detections, ImageBoxes, read_boxes
from iconograph.reading.decode import read_image
from tests.conftest import run_cli

BOXES = {  # image -> (labels, scores, boxes in pixels)
    "raccoon-1.jpg": (["raccoon", "tree"], [0.9, 0.3], [[81, 88, 522, 408], [10, 5, 200, 300]]),
    "raccoon-12.jpg": (["raccoon"], [0.7], [[30, 20, 180, 150]]),
    "raccoon-103.jpg": (
        ["raccoon", "raccoon", "tree"],
        [0.2, 0.8, 0.5],
        [[5, 5, 60, 90], [40, 30, 200, 170], [0, 0, 250, 10]],
    ),
}


def reference_masks(model_dir, image, boxes):
    """What a user gets from transformers for one image and its boxes: mask logits of the best
    mask per box (by predicted IoU) at the image's size, and that IoU."""
    from transformers import SamModel, SamProcessor

    model = SamModel.from_pretrained(model_dir).eval()
    processor = SamProcessor.from_pretrained(model_dir)
    inputs = processor(images=image, input_boxes=[boxes], return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs, multimask_output=True)
    logits = processor.post_process_masks(
        output.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"], binarize=False
    )[0]
    best = output.iou_scores[0].argmax(dim=1)
    rows = torch.arange(len(best))
    return logits[rows, best].numpy(), output.iou_scores[0][rows, best].numpy()


def write_box_file(path, images):
    records = []
    for image in images:
        labels, scores, boxes = BOXES[image.name]
        records.append(
            {"path": str(image), "boxes": Detections.from_labels(boxes, labels, scores).to_records(), "error": None}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def images(raccoon_images):
    return [p for p in raccoon_images if p.name in BOXES]


def assert_same_masks(ours: np.ndarray, logits: np.ndarray):
    """Equal masks, except pixels whose reference logit is within float noise of the threshold."""
    assert ours.shape == logits.shape
    differ = ours != (logits > 0)
    assert not (differ & (np.abs(logits) > 1e-4)).any()
    assert differ.mean() < 1e-4


def test_masks_equal_transformers_for_the_same_boxes(tiny_sam, images, tmp_path):
    box_file = write_box_file(tmp_path / "boxes.jsonl", images)
    results = ig.segment(images, boxes=box_file, model=str(tiny_sam), store=tmp_path / "store", batch_size=2)
    assert [r.path for r in results] == [str(p) for p in images]
    for result, image in zip(results, images):
        labels, scores, boxes = BOXES[image.name]
        order = np.argsort(-np.array(scores), kind="stable")  # records are sorted by score
        logits, iou = reference_masks(tiny_sam, read_image(image).image, boxes)
        assert result.detections.labels == [labels[i] for i in order]
        assert np.allclose(result.detections.xyxy, np.array(boxes, float)[order])
        assert_same_masks(result.detections.mask_array(), logits[order])
        assert np.allclose(result.mask_scores, iou[order], atol=1e-6)
        assert (result.width, result.height) == read_image(image).image.size


def test_cli_caches_by_image_and_prompts_and_reports_bad_images(tiny_sam, images, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    box_file = write_box_file(tmp_path / "boxes.jsonl", images)
    args = ["segment", *images, bad, "--boxes", box_file, "--model", tiny_sam, "--store", tmp_path / "store"]
    first = run_cli(*args, "--out", tmp_path / "a.jsonl", check=True)
    assert "4 images: 3 ok, 1 failed; 3 computed, 0 from cache; 6 masks" in first.stderr
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert records[-1]["boxes"] == [] and records[-1]["error"]
    assert all(set(b) >= {"label", "score", "xyxy", "segmentation", "mask_score"} for b in records[0]["boxes"])
    assert records[0]["boxes"][0]["segmentation"]["size"] == [417, 650]

    second = run_cli(*args, "--out", tmp_path / "b.jsonl", check=True)
    assert "0 computed, 3 from cache" in second.stderr
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()

    # new boxes for one image: only that image is computed again
    BOXES_CHANGED = dict(BOXES)
    BOXES_CHANGED["raccoon-12.jpg"] = (["raccoon"], [0.7], [[31, 20, 180, 150]])
    changed = [
        {"path": str(p), "boxes": Detections.from_labels(*reversed_args(BOXES_CHANGED[p.name])).to_records()}
        for p in images
    ]
    (tmp_path / "boxes2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in changed))
    args[args.index(box_file)] = tmp_path / "boxes2.jsonl"
    third = run_cli(*args, "--out", tmp_path / "c.jsonl")
    assert "1 computed, 2 from cache" in third.stderr

    assert run_cli(*args, "--strict", "--out", tmp_path / "d.jsonl").returncode == 3


def reversed_args(entry):
    labels, scores, boxes = entry
    return boxes, labels, scores


def test_coco_png_and_annotated_outputs(tiny_sam, images, tmp_path):
    from pycocotools.coco import COCO

    # a COCO box file as the prompts (ground-truth boxes: no scores)
    truth = BoxDataset(
        [
            ImageBoxes(str(p), *read_image(p).image.size, Detections.from_labels(BOXES[p.name][2], BOXES[p.name][0]))
            for p in images
        ],
        ("raccoon", "tree"),
    )
    truth.write_coco(tmp_path / "truth.json")
    args = ["segment", *images, "--boxes", tmp_path / "truth.json", "--model", tiny_sam, "--store", tmp_path / "s"]
    run_cli(*args, "--out", tmp_path / "seg.jsonl", "--annotate", tmp_path / "drawn", check=True)
    run_cli(*args, "--out", tmp_path / "out" / "seg.json", check=True)
    run_cli(*args, "--out", tmp_path / "maps", "--format", "png", check=True)

    records = [json.loads(line) for line in (tmp_path / "seg.jsonl").read_text().splitlines()]
    coco = COCO(str(tmp_path / "out" / "seg.json"))
    dataset = read_boxes(tmp_path / "out" / "seg.json")
    for record, img in zip(records, dataset):
        ours = Detections.from_records(record["boxes"]).mask_array()
        assert np.array_equal(img.detections.mask_array(), ours)
        image_id = img.meta["coco_id"]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert np.array_equal(np.stack([coco.annToMask(a).astype(bool) for a in annotations]), ours)
        assert [a["area"] for a in annotations] == [float(m.sum()) for m in ours]
    assert (tmp_path / "maps" / "classes.txt").read_text() == "raccoon\ntree\n"
    assert sorted(p.name for p in (tmp_path / "maps").glob("*.png")) == sorted(p.stem + ".png" for p in images)
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == sorted(p.name for p in images)


def test_queries_are_boxed_by_the_detector_then_segmented(tiny_sam, tiny_owlvit, images, tmp_path):
    found = ig.detect(images, ["raccoon", "tree"], model=str(tiny_owlvit), store=tmp_path / "s", threshold=0.0)
    dataset = BoxDataset([ImageBoxes(r.path, r.width, r.height, r.detections) for r in found], ("raccoon", "tree"))
    dataset.write_coco(tmp_path / "found.json")
    by_file = ig.segment(images, boxes=tmp_path / "found.json", model=str(tiny_sam), store=tmp_path / "s")
    by_words = ig.segment(
        images,
        queries="raccoon,tree",
        detector=str(tiny_owlvit),
        model=str(tiny_sam),
        store=tmp_path / "s",
        threshold=0.0,
    )
    assert sum(len(r.detections) for r in by_words) > 0
    for a, b in zip(by_file, by_words):
        assert np.array_equal(a.detections.mask_array(), b.detections.mask_array())
        assert np.allclose(a.detections.xyxy, b.detections.xyxy)


def test_usage_errors_are_one_line(tiny_sam, tiny_owlvit, images, tmp_path):
    neither = run_cli("segment", images[0], "--model", tiny_sam)
    assert neither.returncode == 2 and "--boxes" in neither.stderr and "Traceback" not in neither.stderr
    box_file = write_box_file(tmp_path / "b.jsonl", images[:1])
    wrong = run_cli("segment", images[0], "--boxes", box_file, "--model", tiny_owlvit)
    assert wrong.returncode == 2 and "SAM" in wrong.stderr
    no_file = run_cli("segment", images[0], "--boxes", tmp_path / "missing.jsonl", "--model", tiny_sam)
    assert no_file.returncode == 2 and "missing.jsonl" in no_file.stderr
    copy = tmp_path / "copy.jpg"
    shutil.copy(images[0], copy)
    assert (
        run_cli(
            "segment", copy, "--boxes", box_file, "--model", tiny_sam, "--format", "voc", "--out", tmp_path / "v"
        ).returncode
        == 2
    )
