"""Masks as data: RLE round trips (holes included), area and box from the mask, COCO instance
segmentation in and out (pycocotools as the reference reader), PNG label maps, convert-boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iconograph.boxes import BoxDataset, Detections, ImageBoxes, read_boxes
from iconograph.boxes import masks as rle
from tests.conftest import RACCOON, run_cli


def holed_masks(height=37, width=53, seed=0) -> np.ndarray:
    """Three instance masks: a ring (a hole), a random blob, and two separate pieces."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    ring = ((yy - 15) ** 2 + (xx - 20) ** 2 <= 100) & ((yy - 15) ** 2 + (xx - 20) ** 2 > 16)
    blob = rng.random((height, width)) < 0.3
    pieces = np.zeros((height, width), bool)
    pieces[2:6, 40:50] = True
    pieces[30:35, 1:4] = True
    return np.stack([ring, blob, pieces])


def test_mask_rle_coco_file_round_trip_is_bit_exact(tmp_path):
    masks = holed_masks()
    detections = Detections.from_masks(masks, ["ring", "blob", "pieces"], scores=[0.9, 0.5, 0.7])
    assert (masks[0] == False).any() and masks[0][15, 20] == False  # noqa: E712 (the hole is there)
    assert np.array_equal(detections.mask_array(), masks)
    # area and box from the mask, equal to a direct computation
    assert detections.area.tolist() == [float(m.sum()) for m in masks]
    for box, mask in zip(detections.xyxy, masks):
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]

    image = tmp_path / "a.png"
    image.write_bytes(b"")  # the COCO file only names it
    dataset = BoxDataset([ImageBoxes(str(image), 53, 37, detections)], detections.classes)
    dataset.write_coco(tmp_path / "masks.json")
    data = json.loads((tmp_path / "masks.json").read_text())
    assert all(isinstance(a["segmentation"]["counts"], str) for a in data["annotations"])

    again = read_boxes(tmp_path / "masks.json").images[0].detections
    assert np.array_equal(again.mask_array(), masks)
    assert again.labels == detections.labels and np.allclose(again.xyxy, detections.xyxy)

    # pycocotools' own reader decodes the written file to the same masks
    from pycocotools.coco import COCO

    coco = COCO(str(tmp_path / "masks.json"))
    for annotation, mask in zip(coco.loadAnns(coco.getAnnIds()), masks):
        assert np.array_equal(coco.annToMask(annotation).astype(bool), mask)
        assert annotation["area"] == mask.sum()

    # the JSONL record form round-trips too
    records = json.loads(json.dumps(detections.to_records()))
    assert records[0]["segmentation"]["size"] == [37, 53]
    assert np.array_equal(Detections.from_records(records).mask_array(), detections.sorted().mask_array())


def test_polygon_and_uncompressed_rle_truth_read_as_pycocotools_reads_them(tmp_path):
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO

    pieces = holed_masks()[2]
    uncompressed_counts = []  # column-major run lengths, starting with zeros
    flat = pieces.flatten(order="F")
    value, run = False, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            uncompressed_counts.append(run)
            value, run = pixel, 1
    uncompressed_counts.append(run)
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 53, "height": 37}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 1,
                "bbox": [0, 0, 1, 1],
                "segmentation": [[5.0, 5.0, 30.0, 8.0, 20.0, 30.0], [40.0, 20.0, 50.0, 20.0, 50.0, 33.0, 40.0, 33.0]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 1,
                "bbox": [0, 0, 1, 1],
                "segmentation": {"size": [37, 53], "counts": uncompressed_counts},
            },
        ],
    }
    (tmp_path / "poly.json").write_text(json.dumps(data))
    ours = read_boxes(tmp_path / "poly.json").images[0].detections.mask_array()
    coco = COCO(str(tmp_path / "poly.json"))
    reference = np.stack([coco.annToMask(a).astype(bool) for a in coco.loadAnns([1, 2])])
    assert np.array_equal(ours, reference)
    assert np.array_equal(ours[1], pieces)
    assert mask_util.area(mask_util.encode(np.asfortranarray(reference[0].astype(np.uint8)))) == ours[0].sum()


def test_png_label_maps_paint_classes_with_the_higher_score_on_top(tmp_path):
    from PIL import Image

    masks = holed_masks()
    detections = Detections.from_masks(masks, ["ring", "blob", "ring"], scores=[0.9, 0.5, 0.7])
    dataset = BoxDataset([ImageBoxes(str(tmp_path / "x.jpg"), 53, 37, detections)], ("ring", "blob"))
    dataset.write(tmp_path / "maps", "png")
    assert (tmp_path / "maps" / "classes.txt").read_text() == "ring\nblob\n"
    written = np.asarray(Image.open(tmp_path / "maps" / "x.png"))
    expected = np.zeros((37, 53), np.uint8)
    expected[masks[1]] = 2  # blob, score 0.5, painted first
    expected[masks[2]] = 1  # pieces (ring class), 0.7
    expected[masks[0]] = 1  # ring, 0.9, on top
    assert np.array_equal(written, expected)
    assert np.array_equal(rle.read_label_map(tmp_path / "maps" / "x.png"), expected)

    boxes_only = BoxDataset([ImageBoxes(str(tmp_path / "x.jpg"), 53, 37, detections.without_masks())], ("ring", "blob"))
    with pytest.raises(Exception, match="need masks"):
        boxes_only.write(tmp_path / "maps2", "png")


def test_subsets_nms_and_class_changes_keep_each_mask_with_its_box():
    masks = holed_masks()
    detections = Detections.from_masks(masks, ["a", "b", "a"], scores=[0.2, 0.9, 0.5])
    ordered = detections.sorted()
    assert ordered.scores.tolist() == [0.9, 0.5, 0.2]
    assert np.array_equal(ordered.mask_array(), masks[[1, 2, 0]])
    assert np.array_equal(detections[np.array([False, True, True])].mask_array(), masks[1:])
    assert np.array_equal(detections.with_classes(["b", "a"]).mask_array(), masks)
    assert detections.concat(detections.without_masks()).masks is None
    assert len(detections.concat(detections).masks) == 6


def test_convert_boxes_keeps_masks_in_coco_and_drops_them_for_yolo(tmp_path):
    masks = holed_masks(40, 60)
    image = RACCOON / "images" / "raccoon-1.jpg"
    detections = Detections.from_masks(masks, ["ring", "blob", "pieces"])
    BoxDataset([ImageBoxes(str(image), 60, 40, detections)], detections.classes).write_coco(tmp_path / "in.json")
    run_cli("convert-boxes", tmp_path / "in.json", "--to", "coco", "--out", tmp_path / "out" / "out.json", check=True)
    again = read_boxes(tmp_path / "out" / "out.json").images[0]
    assert again.path == str(image) or again.path.endswith("raccoon-1.jpg")
    assert np.array_equal(again.detections.mask_array(), masks)
    run_cli("convert-boxes", tmp_path / "in.json", "--to", "yolo", "--out", tmp_path / "yolo", check=True)
    yolo = read_boxes(tmp_path / "yolo", classes=detections.classes)
    assert yolo.images[0].detections.masks is None and len(yolo.images[0].detections) == 3
