"""segment --auto: the mask-generation pipeline's point grid with SAM; masks and scores equal what
the transformers pipeline gives when called directly on the same image with the same options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import iconograph as ig
from iconograph.reading.decode import read_image
from tests.conftest import run_cli

# keep every mask (no thresholds, no NMS) so that all of the grid's masks are compared
SETTINGS = {
    "points_per_side": 6,
    "points_per_batch": 16,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "crops_nms_thresh": 1.0,
}


@pytest.fixture
def drawn(tmp_path):
    paths = []
    for i, (width, height) in enumerate([(120, 90), (80, 100)]):
        pixels = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
        pixels[20:60, 30:70] = (200, 40, 40)
        Image.fromarray(pixels).save(tmp_path / f"drawn-{i}.png")
        paths.append(tmp_path / f"drawn-{i}.png")
    return paths


def test_auto_masks_equal_the_mask_generation_pipeline(tiny_sam, drawn, tmp_path):
    from transformers import pipeline

    results = ig.segment(drawn, auto=SETTINGS, model=str(tiny_sam), store=tmp_path / "s", batch_size=2)
    generator = pipeline("mask-generation", model=str(tiny_sam))
    options = {k: v for k, v in SETTINGS.items() if k != "points_per_side"}
    for result, path in zip(results, drawn):
        expected = generator(read_image(path).image, points_per_crop=SETTINGS["points_per_side"], **options)
        order = np.argsort(-np.asarray(expected["scores"], np.float64), kind="stable")
        scores = np.asarray(expected["scores"], np.float64)[order]
        masks = np.stack([np.asarray(expected["masks"][i], bool) for i in order])
        assert len(scores) == 3 * 6 * 6  # three masks per grid point, none dropped
        assert set(result.detections.labels) == {"object"}
        assert np.allclose(result.detections.scores, scores, atol=1e-6)
        ours = result.detections.mask_array()
        assert ours.shape == masks.shape
        assert (ours != masks).mean() < 1e-4


def test_cli_auto_records_cache_and_usage(tiny_sam, drawn, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    args = ["segment", *drawn, bad, "--auto", "--model", tiny_sam, "--store", tmp_path / "s"]
    args += ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    first = run_cli(*args, "--out", tmp_path / "a.jsonl")
    assert first.returncode == 0 and "3 images: 2 ok, 1 failed; 2 computed, 0 from cache" in first.stderr
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert records[0]["boxes"] and {"label", "score", "xyxy", "segmentation"} == set(records[0]["boxes"][0])
    assert records[2]["error"]
    again = ig.segment(
        drawn,
        auto={"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
        model=str(tiny_sam),
        store=tmp_path / "s",
    )
    assert [r.to_record() for r in again] == records[:2]
    both = run_cli("segment", drawn[0], "--auto", "--queries", "coin", "--model", tiny_sam)
    assert both.returncode == 2 and "--auto" in both.stderr and "Traceback" not in both.stderr
