"""Segment everything (``segment --auto``): the transformers ``mask-generation`` pipeline's
point-grid mode with a SAM model.

A grid of ``points_per_side`` x ``points_per_side`` points over the image prompts SAM, in batches
of ``points_per_batch`` points; the pipeline's own steps then keep the masks whose predicted IoU
and stability pass ``pred_iou_thresh`` and ``stability_score_thresh`` and drop duplicates by box
NMS at ``crops_nms_thresh`` (``MaskGenerationPipeline._forward`` and ``postprocess``). The one
difference from calling the pipeline per image: the image embedding comes from a batch of images
(the runner's), computed once per image. One crop layer (the whole image) is used.

Each mask is an instance labelled ``object`` with its predicted IoU as the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from iconograph.backends.base import DECODE_VERSION, ModelNotFoundError, resolve_device
from iconograph.backends.hf import HFModel, HFProcessorJob
from iconograph.boxes import Detections
from iconograph.engine.fingerprint import digest

AUTO_LABEL = "object"


@dataclass(frozen=True)
class AutoMaskSettings:
    """The mask-generation pipeline's options (its defaults)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    crops_nms_thresh: float = 0.7


class AutoMaskSegmenter(HFProcessorJob):
    """An image job: every mask SAM finds from a point grid."""

    model_class = "SamModel"
    processor_class = "SamProcessor"

    def __init__(self, model: str, settings: AutoMaskSettings | None = None, *, device: str | None = None):
        self.spec = str(model)
        self.settings = settings or AutoMaskSettings()
        self.device = resolve_device(device)
        self.hf = HFModel(self.spec, kind="hf-segmenter", what="a SAM segmenter")
        if self.hf.model_type != "sam":
            raise ModelNotFoundError(f"{self.spec} is a '{self.hf.model_type}' model; --auto needs a SAM model")

    @cached_property
    def pipeline(self):
        from transformers import pipeline

        model = self.model
        return pipeline(
            "mask-generation", model=model, image_processor=self.processor.image_processor, device=model.device
        )

    @property
    def cache_name(self) -> str:
        return "segment_auto_" + digest(
            self.fingerprint, self.preprocess_fingerprint, asdict(self.settings), DECODE_VERSION
        )

    def run_batch(self, pixels, sizes: Sequence[tuple[int, int]]) -> list[dict]:
        found = self.segment_pixels(pixels, sizes)
        return [{"width": w, "height": h, "boxes": d.to_records()} for d, (w, h) in zip(found, sizes)]

    def segment_pixels(self, pixels, sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        import torch

        pipe = self.pipeline
        with torch.inference_mode():
            embeddings = pipe.model.get_image_embeddings(pixels.to(pipe.device))
            return [self._generate(embeddings[i : i + 1], size) for i, size in enumerate(sizes)]

    def _generate(self, embedding, size: tuple[int, int]) -> Detections:
        """The pipeline's ``preprocess`` (one crop layer) with this embedding, then its
        ``_forward`` per batch of points and its ``postprocess``."""
        import torch

        pipe, s = self.pipeline, self.settings
        image_processor = pipe.image_processor
        width, height = size
        target = image_processor.size.get("longest_edge", image_processor.size.get("height"))
        # the grid and crop box depend only on the image's size (one layer: the whole image)
        crop_boxes, points, _, labels = image_processor.generate_crop_boxes(
            np.zeros((height, width, 3), np.uint8), target, 0, 512 / 1500, s.points_per_side, 1
        )
        reshaped = image_processor._get_preprocess_shape((height, width), target)
        common = {
            "original_sizes": torch.tensor([[height, width]]),
            "reshaped_input_sizes": torch.tensor([list(reshaped)]),
            "full_image_size": torch.tensor([height, width]),
            "image_embeddings": embedding,
        }
        outputs = []
        count = points.shape[1]
        for start in range(0, count, s.points_per_batch):
            inputs = {
                "input_points": points[:, start : start + s.points_per_batch, 0:1, :].to(pipe.device),
                "input_labels": labels[:, start : start + s.points_per_batch, 0:1].to(pipe.device),
                "input_boxes": crop_boxes[0:1],
                "is_last": start + s.points_per_batch >= count,
                **common,
            }
            outputs.append(
                pipe._forward(
                    inputs, pred_iou_thresh=s.pred_iou_thresh, stability_score_thresh=s.stability_score_thresh
                )
            )
        result = pipe.postprocess(outputs, crops_nms_thresh=s.crops_nms_thresh)
        masks = [np.asarray(m, bool) for m in result["masks"]]
        if not masks:
            return Detections.empty((AUTO_LABEL,), with_scores=True, with_masks=True)
        scores = np.asarray(result["scores"], np.float64).reshape(-1)
        return Detections.from_masks(np.stack(masks), [AUTO_LABEL] * len(masks), scores, classes=(AUTO_LABEL,))

    def __repr__(self) -> str:
        return f"AutoMaskSegmenter({self.spec!r})"
