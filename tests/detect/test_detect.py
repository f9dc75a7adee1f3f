"""Open-vocabulary detection: parity with transformers, NMS vs torchvision, EXIF, formats, errors, cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from iconograph.boxes import read_boxes
from tests.conftest import run_cli

QUERIES = ["raccoon", "a tree", "grass"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pipeline_boxes(model_dir, images, queries, threshold):
    from transformers import pipeline

    detector = pipeline("zero-shot-object-detection", model=str(model_dir))
    return [detector(str(image), candidate_labels=queries, threshold=threshold) for image in images]


def as_comparable(label, score, box):
    return label, round(score, 5), tuple(box)


@pytest.mark.parametrize("model_fixture", ["tiny_owlvit", "tiny_owlv2"])
def test_boxes_and_scores_equal_the_transformers_pipeline(model_fixture, request, raccoon_images, tmp_path):
    model = request.getfixturevalue(model_fixture)
    threshold = 0.45
    out = tmp_path / "boxes.jsonl"
    run_cli(
        "detect",
        *raccoon_images,
        "--queries",
        ",".join(QUERIES),
        "--model",
        model,
        "--threshold",
        threshold,
        "--nms-iou",
        "1",
        "--no-clip",
        "--batch-size",
        "3",
        "--out",
        out,
        check=True,
    )
    records = read_jsonl(out)
    assert [r["path"] for r in records] == [str(p) for p in raccoon_images]
    expected = pipeline_boxes(model, raccoon_images, QUERIES, threshold)
    for record, reference in zip(records, expected):
        assert record["error"] is None
        assert (record["width"], record["height"]) == Image.open(record["path"]).size
        # the pipeline truncates its boxes to integers; ours are the same floats, untruncated
        mine = sorted(as_comparable(b["label"], b["score"], [int(v) for v in b["xyxy"]]) for b in record["boxes"])
        theirs = sorted(
            as_comparable(d["label"], d["score"], [d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")])
            for d in reference
        )
        assert mine == theirs
        assert 0 < len(mine) < 16 * len(QUERIES)  # the threshold cut some, kept some
        scores = [b["score"] for b in record["boxes"]]
        assert scores == sorted(scores, reverse=True)


def test_nms_is_torchvision_batched_nms_on_the_candidates(tiny_owlvit, raccoon_images):
    import iconograph as ig

    detector = ig.OwlDetector(str(tiny_owlvit), queries=QUERIES, threshold=0.3, nms_iou=0.1).prepare()
    images = [ig.read_image(path).image for path in raccoon_images]
    pixels = torch.stack([detector.make_preprocess()(image) for image in images])
    candidates = detector.detect_pixels(pixels, [image.size for image in images])
    suppressed = 0
    for before, after in zip(candidates, detector.predict(images)):
        keep = torchvision.ops.batched_nms(
            torch.tensor(before.xyxy), torch.tensor(before.scores), torch.tensor(before.class_id), 0.1
        ).numpy()
        assert np.array_equal(after.xyxy, before.xyxy[keep]) and after.labels == [before.labels[i] for i in keep]
        suppressed += len(before) - len(after)
    assert suppressed > 0


@pytest.mark.parametrize("model_fixture", ["tiny_owlvit", "tiny_owlv2"])
def test_image_queries_equal_transformers_image_guided_detection(model_fixture, request, raccoon_images, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForZeroShotObjectDetection
    from transformers.image_transforms import center_to_corners_format

    model_dir = request.getfixturevalue(model_fixture)
    examples = tmp_path / "examples"
    examples.mkdir()
    example = Image.open(raccoon_images[1]).convert("RGB").crop((40, 30, 200, 170))
    example.save(examples / "raccoon.png")
    threshold = 0.4
    import iconograph as ig

    detector = ig.OwlDetector(str(model_dir), image_queries=examples, threshold=threshold, nms_iou=1, clip=False)
    found = detector.prepare().predict([ig.read_image(raccoon_images[0]).image])[0]
    record = {"boxes": found.to_records()}

    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(model_dir).eval()
    image = Image.open(raccoon_images[0]).convert("RGB")
    with torch.no_grad():
        out = model.image_guided_detection(
            pixel_values=processor(images=image, return_tensors="pt")["pixel_values"],
            query_pixel_values=processor(images=Image.open(examples / "raccoon.png"), return_tensors="pt")[
                "pixel_values"
            ],
        )
    scores = torch.sigmoid(out.logits[0, :, 0])
    side = max(image.size) if model_fixture == "tiny_owlv2" else None  # OWLv2 pads to a square
    scale = torch.tensor([side, side, side, side] if side else [image.width, image.height] * 2)
    boxes = center_to_corners_format(out.target_pred_boxes[0]) * scale
    keep = scores > threshold
    expected = sorted(
        as_comparable("raccoon", s, b) for s, b in zip(scores[keep].tolist(), np.round(boxes[keep].numpy(), 3).tolist())
    )
    mine = sorted(as_comparable(b["label"], b["score"], np.round(b["xyxy"], 3).tolist()) for b in record["boxes"])
    assert len(mine) > 0
    assert [m[:2] for m in mine] == [e[:2] for e in expected]
    assert np.allclose([m[2] for m in mine], [e[2] for e in expected], atol=0.01)


def make_red_detector(model_dir: Path) -> Path:
    """Set a tiny OWL-ViT's weights so it finds red: each patch's box is its grid cell (the box head
    outputs zero, leaving OWL-ViT's grid bias) and its logit grows with the patch's red-minus-green."""
    from transformers import OwlViTForObjectDetection

    model = OwlViTForObjectDetection.from_pretrained(model_dir)
    vision = model.owlvit.vision_model
    with torch.no_grad():
        for parameter in [*model.class_head.parameters(), *model.box_head.dense2.parameters()]:
            parameter.zero_()
        embed = vision.embeddings
        embed.patch_embedding.weight.zero_()
        patch_pixels = embed.patch_embedding.weight[0, 0].numel()
        embed.patch_embedding.weight[0, 0] = 1 / patch_pixels  # feature 0: mean(R) - mean(G)
        embed.patch_embedding.weight[0, 1] = -1 / patch_pixels
        embed.patch_embedding.weight[1] = -embed.patch_embedding.weight[0]
        embed.class_embedding.zero_()
        embed.position_embedding.weight.zero_()
        for layer in vision.encoder.layers:  # residual connections only
            for parameter in [*layer.self_attn.out_proj.parameters(), *layer.mlp.fc2.parameters()]:
                parameter.zero_()
        vision.post_layernorm.weight.fill_(1.0)
        vision.post_layernorm.bias.fill_(1.0)  # the class token becomes all ones, a neutral factor
        model.class_head.logit_shift.weight[0, 0] = 1.0
        model.class_head.logit_shift.weight[0, 1] = -1.0
        model.class_head.logit_shift.bias.fill_(-1.0)
    model.save_pretrained(model_dir)
    return model_dir


def test_boxes_land_on_the_object_of_an_exif_rotated_image(tiny_owlvit, tmp_path):
    import shutil

    model = make_red_detector(Path(shutil.copytree(tiny_owlvit, tmp_path / "red-detector")))
    # displayed upright: 128 x 64, green, a red block at x 64..96, y 32..64 (one patch column, two rows)
    upright = Image.new("RGB", (128, 64), (0, 160, 0))
    upright.paste((255, 0, 0), (64, 32, 96, 64))
    upright.save(tmp_path / "upright.png")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # the camera stored it turned; EXIF says turn back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rotated.jpg", quality=98, exif=exif.tobytes())
    assert Image.open(tmp_path / "rotated.jpg").size == (64, 128)

    import iconograph as ig

    results = ig.detect(
        [tmp_path / "rotated.jpg", tmp_path / "upright.png"],
        ["red"],
        model=str(model),
        threshold=0.5,
        nms_iou=1,
        progress=False,
    )
    rotated, reference = (r.to_record() for r in results)
    assert (rotated["width"], rotated["height"]) == (128, 64)
    assert rotated["boxes"], "the red block was not found"
    patch_w, patch_h = 128 / 4, 64 / 4
    for box in rotated["boxes"]:
        x1, y1, x2, y2 = box["xyxy"]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        # OWL-ViT's grid bias centres a patch's box on the patch's lower-right corner: within half a patch
        assert 64 <= cx <= 96 + patch_w / 2 and 32 <= cy <= 64 + patch_h / 2, box
        assert box["score"] > 0.99
    # the same boxes as for the upright copy (up to JPEG colour noise)
    assert len(rotated["boxes"]) == len(reference["boxes"])
    assert np.allclose([b["xyxy"] for b in rotated["boxes"]], [b["xyxy"] for b in reference["boxes"]], atol=0.5)


def test_output_formats_and_annotations(tiny_owlvit, raccoon_images, tmp_path):
    from iconograph.detection import DetectionWriter, detect

    common = [*raccoon_images, "--queries", "raccoon,tree", "--model", tiny_owlvit, "--threshold", "0.45"]
    run_cli("detect", *common, "--out", tmp_path / "b.jsonl", "--annotate", tmp_path / "drawn", check=True)
    run_cli("detect", *common, "--format", "coco", "--out", tmp_path / "b.json", check=True)
    records = read_jsonl(tmp_path / "b.jsonl")
    results = detect(raccoon_images, ["raccoon", "tree"], model=str(tiny_owlvit), threshold=0.45, progress=False)
    for fmt in ("voc", "yolo"):
        with DetectionWriter(tmp_path / fmt, fmt, ("raccoon", "tree")) as writer:
            for result in results:
                writer.write(result)
    for fmt, target in (("coco", tmp_path / "b.json"), ("voc", tmp_path / "voc"), ("yolo", tmp_path / "yolo")):
        dataset = {Path(img.path).name: img for img in read_boxes(target, fmt)}  # VOC, YOLO: sorted by name
        assert sorted(dataset) == sorted(Path(r["path"]).name for r in records)
        for record in records:
            img = dataset[Path(record["path"]).name]
            boxes = img.detections.sorted()
            assert boxes.labels == [b["label"] for b in record["boxes"]], fmt
            assert np.allclose(boxes.scores, [b["score"] for b in record["boxes"]]), fmt
            tolerance = 0.01 if fmt == "voc" else 1e-6  # VOC holds two decimals
            assert np.allclose(boxes.xyxy, [b["xyxy"] for b in record["boxes"]], atol=tolerance), fmt
    for image in raccoon_images:
        drawn = Image.open(tmp_path / "drawn" / image.name)
        assert drawn.size == Image.open(image).size
        assert (
            np.abs(np.asarray(drawn, dtype=int) - np.asarray(Image.open(image).convert("RGB"), dtype=int)).max() > 100
        )


def test_broken_image_is_one_error_record_and_the_rest_is_detected(tiny_owlvit, raccoon_images, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    args = ["detect", raccoon_images[0], broken, raccoon_images[1], "--queries", "raccoon", "--model", tiny_owlvit]
    result = run_cli(*args, "--out", tmp_path / "b.jsonl", "--strict")
    assert result.returncode == 3  # with --strict; the run still completes and writes every record
    records = read_jsonl(tmp_path / "b.jsonl")
    assert [r["error"] is None for r in records] == [True, False, True]
    assert records[1]["boxes"] == [] and "\n" not in records[1]["error"]
    assert all(r["boxes"] for r in (records[0], records[2]))
    assert "3 images: 2 ok, 1 failed" in result.stderr


def test_second_run_is_served_from_the_cache(tiny_owlvit, raccoon_images, tmp_path):
    from iconograph.detection import OwlDetector, iter_detections
    from iconograph.engine.jobs import ImageJobRunner

    def run(**options):
        detector = OwlDetector(str(tiny_owlvit), queries=["raccoon"], **options).prepare()
        runner = ImageJobRunner(detector, store=tmp_path / "store", progress=False)
        results = [r.to_record() for r in iter_detections(raccoon_images, detector, runner)]
        return results, (runner.stats.computed, runner.stats.cached)

    first, stats = run()
    assert stats == (4, 0)
    again, stats = run()
    assert stats == (0, 4) and again == first
    _, stats = run(nms_iou=0.2)
    assert stats == (0, 4)  # NMS runs after the cache
    _, stats = run(threshold=0.2)
    assert stats == (4, 0)


def test_unusable_models_and_queries_are_one_line_errors(tiny_clip, tiny_owlvit, raccoon_images, tmp_path):
    from iconograph.detection import OwlDetector

    for args, message in (
        (["--queries", "raccoon", "--model", tmp_path / "missing"], "not found"),
        (["--queries", "raccoon", "--model", tiny_clip], "OWL-ViT or OWLv2"),
        (["--model", tiny_owlvit, "--format", "yolo"], "needs --out"),
    ):
        result = run_cli("detect", raccoon_images[0], *args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr
    with pytest.raises(ValueError, match="at least one text query"):
        OwlDetector(str(tiny_owlvit)).prepare()


def test_python_api(tiny_owlvit, raccoon_images):
    import iconograph as ig

    results = ig.detect(raccoon_images[:2], ["raccoon", "tree"], model=str(tiny_owlvit), threshold=0.45, progress=False)
    assert [r.path for r in results] == [str(p) for p in raccoon_images[:2]]
    detector = ig.OwlDetector(str(tiny_owlvit), queries=["raccoon", "tree"], threshold=0.45).prepare()
    direct = detector.predict([ig.read_image(raccoon_images[0]).image])[0]
    assert direct.labels == results[0].detections.labels
    assert np.allclose(direct.xyxy, results[0].detections.xyxy, atol=1e-4)
