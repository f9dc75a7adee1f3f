"""Box toolkit: coordinate conventions, lossless VOC -> COCO -> YOLO -> VOC, IoU and NMS vs torchvision."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import torch
import torchvision

from iconograph.boxes import BoxDataset, Detections, ImageBoxes, read_boxes
from iconograph.reading.sources import path_key
from tests.conftest import RACCOON, run_cli


def voc_content(folder):
    """What a VOC folder says, straight from the XML text: {image file name: (size, objects)}."""
    content = {}
    for xml_file in sorted(folder.glob("*.xml")):
        root = ET.parse(xml_file).getroot()
        size = tuple(root.findtext(f"size/{tag}") for tag in ("width", "height", "depth"))
        objects = sorted(
            (o.findtext("name"), *(o.findtext(f"bndbox/{t}") for t in ("xmin", "ymin", "xmax", "ymax")))
            for o in root.iter("object")
        )
        content[root.findtext("filename")] = (size, objects)
    return content


def test_voc_coco_yolo_voc_round_trip_is_lossless(tmp_path):
    run_cli("convert-boxes", RACCOON / "annotations", "--to", "coco", "--out", tmp_path / "raccoon.json", check=True)
    run_cli("convert-boxes", tmp_path / "raccoon.json", "--to", "yolo", "--out", tmp_path / "yolo", check=True)
    result = run_cli("convert-boxes", tmp_path / "yolo", "--to", "voc", "--out", tmp_path / "voc", check=True)
    assert "200 images, 217 boxes, 1 classes" in result.stderr

    original, final = voc_content(RACCOON / "annotations"), voc_content(tmp_path / "voc")
    assert len(original) == 200
    assert final == original  # same files, sizes, labels and the exact integer box text

    # the images the final XML files point to are the original images
    dataset = read_boxes(tmp_path / "voc")
    assert {path_key(img.path) for img in dataset} == {path_key(str(p)) for p in (RACCOON / "images").glob("*.jpg")}


def test_each_format_holds_the_documented_coordinates(tmp_path):
    run_cli("convert-boxes", RACCOON / "annotations", "--to", "coco", "--out", tmp_path / "r.json", check=True)
    coco = json.loads((tmp_path / "r.json").read_text())
    image = next(i for i in coco["images"] if i["file_name"].endswith("raccoon-1.jpg"))
    box = next(a["bbox"] for a in coco["annotations"] if a["image_id"] == image["id"])
    assert box == [80.0, 87.0, 442.0, 321.0]  # VOC 81..522 x 88..408 (1-based, inclusive)

    run_cli("convert-boxes", tmp_path / "r.json", "--to", "yolo", "--out", tmp_path / "yolo", check=True)
    values = [float(v) for v in (tmp_path / "yolo" / "labels" / "raccoon-1.txt").read_text().split()]
    assert values == pytest.approx([0, (80 + 522) / 2 / 650, (87 + 408) / 2 / 417, 442 / 650, 321 / 417], abs=1e-15)
    assert (tmp_path / "yolo" / "classes.txt").read_text() == "raccoon\n"
    assert (tmp_path / "yolo" / "images" / "raccoon-1.jpg").resolve() == (
        RACCOON / "images" / "raccoon-1.jpg"
    ).resolve()


def test_whole_image_box_in_every_format():
    whole = Detections.from_labels([[0, 0, 640, 480]], ["coin"])
    box = whole.to_voc()[0].find("bndbox")
    assert [box.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")] == ["1", "1", "640", "480"]
    assert whole.to_coco(1, [1])[0]["bbox"] == [0.0, 0.0, 640.0, 480.0]
    assert whole.to_yolo(640, 480) == "0 0.5 0.5 1.0 1.0\n"
    back = Detections.from_yolo(whole.to_yolo(640, 480), 640, 480, ("coin",))
    assert np.array_equal(back.xyxy, whole.xyxy)


def test_scores_survive_every_format(tmp_path):
    detections = Detections.from_labels(
        [[10.5, 20.25, 100, 200], [0, 0, 50, 60]], ["zeus", "eagle"], [0.9, 0.25], ("eagle", "zeus")
    )
    image = RACCOON / "images" / "raccoon-1.jpg"
    dataset = BoxDataset([ImageBoxes(str(image), 650, 417, detections)], detections.classes)
    for fmt, target in (("coco", tmp_path / "d.json"), ("voc", tmp_path / "voc"), ("yolo", tmp_path / "yolo")):
        dataset.write(target, fmt)
        back = read_boxes(target, fmt).images[0].detections.with_classes(detections.classes)
        assert back.labels == detections.labels, fmt
        assert np.allclose(back.scores, detections.scores), fmt
        assert np.allclose(back.xyxy, detections.xyxy, atol=1e-9), fmt


def test_iou_equals_torchvision():
    rng = np.random.default_rng(0)
    a = _random_boxes(rng, 7)
    b = _random_boxes(rng, 5)
    expected = torchvision.ops.box_iou(torch.tensor(a), torch.tensor(b)).numpy()
    got = Detections.from_labels(a, ["x"] * 7).iou(Detections.from_labels(b, ["x"] * 5))
    assert np.allclose(got, expected)
    assert got[0].shape == (5,)


def test_classwise_nms_equals_torchvision_nms_per_class():
    rng = np.random.default_rng(1)
    boxes = _random_boxes(rng, 60, size=200)
    labels = rng.choice(["zeus", "eagle", "patera"], 60).tolist()
    scores = rng.random(60)
    kept = Detections.from_labels(boxes, labels, scores).nms(0.4)

    expected = set()
    for name in set(labels):
        idx = np.flatnonzero(np.array(labels) == name)
        keep = torchvision.ops.nms(torch.tensor(boxes[idx]), torch.tensor(scores[idx]), 0.4).numpy()
        expected |= {(name, round(float(scores[i]), 12)) for i in idx[keep]}
    assert {(lab, round(float(s), 12)) for lab, s in zip(kept.labels, kept.scores)} == expected
    assert list(kept.scores) == sorted(kept.scores, reverse=True)
    # overlapping boxes of different classes both survive class-wise NMS, not class-agnostic NMS
    pair = Detections.from_labels([[0, 0, 10, 10], [0, 0, 10, 10]], ["zeus", "eagle"], [0.9, 0.8])
    assert len(pair.nms(0.5)) == 2
    assert len(pair.nms(0.5, class_agnostic=True)) == 1


def test_unreadable_annotation_is_one_line_error(tmp_path):
    (tmp_path / "bad.xml").write_text("<annotation><object><name>x</name></object>")
    result = run_cli("convert-boxes", tmp_path, "--to", "coco", "--out", tmp_path / "x.json")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "bad.xml" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _random_boxes(rng, n, size=100):
    xy = rng.random((n, 2)) * size
    wh = rng.random((n, 2)) * size / 2 + 1
    return np.concatenate([xy, xy + wh], axis=1)
