"""Box-prompted instance masks with SAM-family models: SAM and SlimSAM (``SamModel`` /
``SamProcessor``) and SAM2 (``Sam2Model`` / ``Sam2Processor``), chosen by the folder's
``model_type`` (:func:`box_segmenter`).

For each box the masks and predicted IoUs are what transformers gives for the same image and
boxes (``SamProcessor(images, input_boxes=...)``, ``SamModel(..., multimask_output=True)``,
``post_process_masks``; the same with the ``Sam2`` classes), and the kept mask is the one with the highest predicted IoU. Unlike a
call per box, the image embedding is computed once per image (in batches of images,
``get_image_embeddings``) and all boxes of one image go through the prompt encoder and mask
decoder as one batch.

A result keeps each prompt box's label, score and box; the mask comes with ``mask_score`` (the
predicted IoU of the kept mask).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from iconograph.backends.base import DECODE_VERSION, ModelNotFoundError, resolve_device
from iconograph.backends.hf import HFModel, HFProcessorJob
from iconograph.boxes import Detections
from iconograph.boxes.masks import encode
from iconograph.engine.fingerprint import digest

DEFAULT_SEGMENTER = "facebook/sam-vit-base"
SAM_MODEL_TYPES = ("sam",)
SAM2_MODEL_TYPES = ("sam2",)


def prompt_digest(prompts: Detections) -> str:
    """Identity of one image's box prompts (labels, scores and boxes, exactly)."""
    scores = None if prompts.scores is None else prompts.scores.tolist()
    return digest(prompts.labels, scores, prompts.xyxy.tolist())


def box_segmenter(model: str = DEFAULT_SEGMENTER, *, device: str | None = None) -> SamSegmenter:
    """The box-prompted segmenter for the folder's ``model_type``: SAM (and SlimSAM) or SAM2."""
    hf = HFModel(str(model), kind="hf-segmenter", what="a SAM segmenter")
    kind = Sam2Segmenter if hf.model_type in SAM2_MODEL_TYPES else SamSegmenter
    return kind(model, device=device, hf=hf)


class SamSegmenter(HFProcessorJob):
    """``SamSegmenter(model).segment(image, boxes)``; also an image job for the runner, whose box
    prompts per image come from ``set_prompts(path_key -> Detections)``."""

    model_types = SAM_MODEL_TYPES
    model_class = "SamModel"
    processor_class = "SamProcessor"

    def __init__(
        self,
        model: str = DEFAULT_SEGMENTER,
        *,
        multimask: bool = True,
        device: str | None = None,
        hf: HFModel | None = None,
    ):
        self.spec = str(model)
        self.multimask = bool(multimask)
        self.device = resolve_device(device)
        self.hf = hf or HFModel(self.spec, kind="hf-segmenter", what="a SAM segmenter")
        if self.hf.model_type not in SAM_MODEL_TYPES + SAM2_MODEL_TYPES:
            raise ModelNotFoundError(
                f"{self.spec} is a '{self.hf.model_type}' model; box prompts need a SAM or SAM2 model"
                " (model_type sam or sam2)"
            )
        if self.hf.model_type not in self.model_types:
            raise ModelNotFoundError(
                f"{self.spec} is a '{self.hf.model_type}' model: load it with box_segmenter(), not {type(self).__name__}"
            )
        self._prompts: dict[str, Detections] = {}
        self._by_key: dict[str, Detections] = {}
        self._lock = threading.Lock()

    # ---- model, processor, fingerprints ---------------------------------------------------

    @property
    def cache_name(self) -> str:
        return "segment_" + digest(self.fingerprint, self.preprocess_fingerprint, self.multimask, DECODE_VERSION)

    # ---- prompts per image ------------------------------------------------------------------

    def set_prompts(self, prompts: dict[str, Detections]) -> None:
        """Box prompts by :func:`iconograph.reading.sources.path_key` of each image."""
        self._prompts = dict(prompts)

    def prompts_for(self, path: str) -> Detections:
        from iconograph.reading.sources import path_key

        return self._prompts.get(path_key(path)) or Detections.empty(with_scores=True)

    def item_key(self, path: str, content_hash: str) -> str:
        prompts = self.prompts_for(path)
        key = digest(content_hash, prompt_digest(prompts))
        with self._lock:
            self._by_key[key] = prompts
        return key

    # ---- inference ----------------------------------------------------------------------------

    def run_batch(self, pixels, sizes: Sequence[tuple[int, int]], keys: Sequence[str]) -> list[dict]:
        """Cacheable records: image size and the boxes with their masks."""
        with self._lock:  # computed once per run: drop them so a long run does not keep every prompt
            prompts = [self._by_key.pop(key) for key in keys]
        results = self.segment_pixels(pixels, sizes, prompts)
        return [
            {"width": w, "height": h, "boxes": mask_records(d, mask_scores)}
            for (d, mask_scores), (w, h) in zip(results, sizes)
        ]

    def segment_pixels(
        self, pixels, sizes: Sequence[tuple[int, int]], prompts: Sequence[Detections]
    ) -> list[tuple[Detections, np.ndarray]]:
        """(boxes with masks, predicted IoU of each mask) for preprocessed images of the given
        (width, height) and their box prompts."""
        import torch

        todo = [i for i, p in enumerate(prompts) if len(p)]
        results = [(Detections.empty(p.classes, p.scores is not None, with_masks=True), np.zeros(0)) for p in prompts]
        if not todo:
            return results
        with torch.inference_mode():
            # one image embedding per image, computed once for all of its boxes
            embeddings = self.model.get_image_embeddings(pixels[todo].to(self.device))
            for row, i in enumerate(todo):
                results[i] = self._decode_boxes(self._one_image(embeddings, row), sizes[i], prompts[i])
        return results

    def _one_image(self, embeddings, row: int):
        """The image embedding of one image of a batch, as the model takes it back."""
        return embeddings[row : row + 1]

    def _input_boxes(self, prompts: Detections, original: tuple[int, int]):
        """The boxes scaled as ``SamProcessor.__call__`` scales them, (1, n, 4) on the device."""
        import torch

        processor = self.processor
        boxes = processor._normalize_coordinates(processor.target_size, prompts.xyxy, original, is_bounding_box=True)
        return torch.as_tensor(np.asarray(boxes, np.float64)).float()[None].to(self.device)

    def _post_process(self, pred_masks, original: tuple[int, int]):
        """``post_process_masks`` for one image: (n, k, h, w) booleans at the image's size."""
        processor = self.processor
        reshaped = processor.image_processor._get_preprocess_shape(original, processor.target_size)
        return processor.post_process_masks(pred_masks, [original], [reshaped])[0]

    def _decode_boxes(self, embedding, size: tuple[int, int], prompts: Detections) -> tuple[Detections, np.ndarray]:
        import torch

        width, height = size
        original = (height, width)
        # the processor's own scaling of the boxes and post-processing of the masks, so the masks
        # land where transformers puts them
        input_boxes = self._input_boxes(prompts, original)
        output = self.model(image_embeddings=embedding, input_boxes=input_boxes, multimask_output=self.multimask)
        masks = self._post_process(output.pred_masks.cpu(), original)  # (n, k, h, w)
        iou = output.iou_scores[0].float().cpu()  # (n, k)
        best = iou.argmax(dim=1)
        chosen = masks[torch.arange(len(best)), best].numpy()
        mask_scores = iou[torch.arange(len(best)), best].numpy().astype(np.float64)
        return Detections(prompts.xyxy, prompts.class_id, prompts.classes, prompts.scores, encode(chosen)), mask_scores

    def segment(self, image, prompts: Detections) -> tuple[Detections, np.ndarray]:
        """(boxes with masks, mask scores) for one RGB PIL image (already upright) and its boxes."""
        import torch

        pixels = torch.stack([self.make_preprocess()(image)])
        return self.segment_pixels(pixels, [image.size], [prompts])[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class Sam2Segmenter(SamSegmenter):
    """SAM2 (``Sam2Model`` / ``Sam2Processor``): the same box prompts, best mask by predicted IoU
    and post-processing as :class:`SamSegmenter`; its image embedding is a list of feature maps
    (one per level) and its processor resizes to a square without padding."""

    model_types = SAM2_MODEL_TYPES
    model_class = "Sam2Model"
    processor_class = "Sam2Processor"

    def _one_image(self, embeddings, row: int):
        return [level[row : row + 1] for level in embeddings]

    def _input_boxes(self, prompts: Detections, original: tuple[int, int]):
        """The boxes scaled as ``Sam2Processor.__call__`` scales them."""
        import torch

        processor = self.processor
        boxes = torch.as_tensor(np.asarray(prompts.xyxy, np.float64)).float()
        boxes = processor._normalize_coordinates(processor.target_size, boxes, original, is_bounding_box=True)
        return boxes[None].to(self.device)

    def _post_process(self, pred_masks, original: tuple[int, int]):
        return self.processor.post_process_masks(pred_masks, [original])[0]


def mask_records(detections: Detections, mask_scores: np.ndarray) -> list[dict]:
    """``Detections.to_records`` (sorted by score) with each box's ``mask_score``."""
    order = np.arange(len(detections))
    if detections.scores is not None:
        order = np.argsort(-detections.scores, kind="stable")  # the order to_records writes
    records = detections.to_records()
    for record, i in zip(records, order):
        record["mask_score"] = float(mask_scores[i]) if len(mask_scores) else None
    return records
