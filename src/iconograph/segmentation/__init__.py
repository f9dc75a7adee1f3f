"""Segmentation: instance masks from box prompts (SAM-family models), boxes from the detector for
word prompts, masks from words directly (SAM3, CLIPSeg), everything from a point grid (--auto);
JSONL / COCO instance segmentation / PNG label maps, annotated images."""

from iconograph.segmentation.auto import AutoMaskSegmenter, AutoMaskSettings
from iconograph.segmentation.run import (
    SegmentationResult,
    iter_segmentations,
    read_box_prompts,
    run_segmentation,
    segment,
)
from iconograph.segmentation.sam import DEFAULT_SEGMENTER, Sam2Segmenter, SamSegmenter, box_segmenter
from iconograph.segmentation.words import ClipSegSegmenter, Sam3Segmenter, WordSegmenter

__all__ = [
    "DEFAULT_SEGMENTER",
    "AutoMaskSegmenter",
    "AutoMaskSettings",
    "ClipSegSegmenter",
    "Sam3Segmenter",
    "WordSegmenter",
    "SamSegmenter",
    "Sam2Segmenter",
    "SegmentationResult",
    "box_segmenter",
    "iter_segmentations",
    "read_box_prompts",
    "run_segmentation",
    "segment",
]
