"""Segmentation: instance masks from box prompts (SAM-family models), boxes from the detector for
word prompts, JSONL / COCO instance segmentation / PNG label maps, annotated images."""

from iconograph.segmentation.run import (
    SegmentationResult,
    iter_segmentations,
    read_box_prompts,
    run_segmentation,
    segment,
)
from iconograph.segmentation.sam import DEFAULT_SEGMENTER, SamSegmenter

__all__ = [
    "DEFAULT_SEGMENTER",
    "SamSegmenter",
    "SegmentationResult",
    "iter_segmentations",
    "read_box_prompts",
    "run_segmentation",
    "segment",
]
