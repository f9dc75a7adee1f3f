"""segment with a SAM2 model (routed by model_type): masks and predicted IoUs equal what
``Sam2Model`` and ``Sam2Processor.post_process_masks`` give for the same boxes; cached re-runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import iconograph as ig
from iconograph.reading.decode import read_image
from iconograph.segmentation import Sam2Segmenter, SamSegmenter, box_segmenter, run_segmentation
from tests.detect.test_segment import BOXES, assert_same_masks, write_box_file


@pytest.fixture
def images(raccoon_images):
    return [p for p in raccoon_images if p.name in BOXES]


def reference_sam2_masks(model_dir, image, boxes):
    """What a user gets from transformers' SAM2 for one image and its boxes: mask logits of the
    best of the multimask outputs per box (by predicted IoU) at the image's size, and that IoU."""
    from transformers import Sam2Model, Sam2Processor

    model = Sam2Model.from_pretrained(model_dir).eval()
    processor = Sam2Processor.from_pretrained(model_dir)
    inputs = processor(images=image, input_boxes=[boxes], return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs, multimask_output=True)
    logits = processor.post_process_masks(output.pred_masks, inputs["original_sizes"], binarize=False)[0]
    best = output.iou_scores[0].argmax(dim=1)
    rows = torch.arange(len(best))
    return logits[rows, best].numpy(), output.iou_scores[0][rows, best].numpy()


def test_sam2_masks_equal_transformers_and_cached_rerun_computes_nothing(tiny_sam2, images, tmp_path):
    assert isinstance(box_segmenter(str(tiny_sam2)), Sam2Segmenter)
    box_file = write_box_file(tmp_path / "boxes.jsonl", images)
    options = dict(boxes=box_file, model=str(tiny_sam2), store=tmp_path / "store", batch_size=2)
    results = ig.segment(images, **options)
    assert [r.path for r in results] == [str(p) for p in images]
    picked = set()
    for result, image in zip(results, images):
        labels, scores, boxes = BOXES[image.name]
        order = np.argsort(-np.array(scores), kind="stable")  # records are sorted by score
        logits, iou = reference_sam2_masks(tiny_sam2, read_image(image).image, boxes)
        masks = result.detections.mask_array()
        assert result.detections.labels == [labels[i] for i in order]
        assert_same_masks(masks, logits[order])
        assert np.allclose(result.mask_scores, iou[order], atol=1e-6)
        assert 0 < masks.mean() < 1  # the masks are neither empty nor the whole image
        picked.add(masks.tobytes())
    assert len(picked) == len(images)

    out = tmp_path / "again.jsonl"
    stats = run_segmentation(images, out=out, **options)
    assert (stats.computed, stats.cached) == (0, len(images))
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.to_record() for r in results] == again


def test_a_sam2_folder_is_refused_by_the_sam_class(tiny_sam2, tiny_sam):
    from iconograph.backends.base import ModelNotFoundError

    assert type(box_segmenter(str(tiny_sam))) is SamSegmenter
    with pytest.raises(ModelNotFoundError, match="box_segmenter"):
        SamSegmenter(str(tiny_sam2))
