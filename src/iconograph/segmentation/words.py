"""Masks for words: text-prompted segmenters, chosen by the model folder's ``model_type``.

* **SAM3** (``Sam3Model`` / ``Sam3Processor``, promptable concept segmentation): each word gives
  instance masks with scores, exactly as ``Sam3Processor.post_process_instance_segmentation``
  makes them from the model's output (``threshold`` on the instance score, ``mask_threshold`` on
  the mask probability).
* **CLIPSeg** (``CLIPSegForImageSegmentation`` / ``CLIPSegProcessor``): one coarse heatmap per
  word, resized to the image (bilinear), through a sigmoid, thresholded at ``mask_threshold``:
  one semantic mask per word whose score is the heatmap's highest probability.

The image embedding is computed once per image (the images of a batch together) and reused for
every word; the words are encoded once per run. A record is one detection per mask: the word as
its label, its score, the tight box around the mask and the mask (COCO RLE).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from iconograph.backends.base import DECODE_VERSION, ModelNotFoundError, resolve_device
from iconograph.backends.hf import HFModel, HFProcessorJob
from iconograph.boxes import Detections
from iconograph.engine.fingerprint import digest


class WordSegmenter(HFProcessorJob):
    """An image job for the runner: masks for the same ``words`` in every image."""

    model_class = ""
    processor_class = ""
    what = ""

    def __init__(
        self,
        model: str,
        words: Sequence[str],
        *,
        threshold: float = 0.3,
        mask_threshold: float = 0.5,
        device: str | None = None,
        hf: HFModel | None = None,
    ):
        self.spec = str(model)
        self.words = tuple(words)
        if not self.words:
            raise ValueError("give at least one word")
        self.threshold = float(threshold)
        self.mask_threshold = float(mask_threshold)
        self.device = resolve_device(device)
        self.hf = hf or HFModel(self.spec, kind="hf-segmenter", what=self.what)

    # ---- model, processor, cache identity ----------------------------------------------------

    @property
    def cache_name(self) -> str:
        settings = (self.words, self.threshold, self.mask_threshold)
        return "segment_words_" + digest(self.fingerprint, self.preprocess_fingerprint, settings, DECODE_VERSION)

    # ---- inference ----------------------------------------------------------------------------

    def run_batch(self, pixels, sizes: Sequence[tuple[int, int]]) -> list[dict]:
        """Cacheable records: image size and one box (with its mask) per mask found."""
        found = self.segment_pixels(pixels, sizes)
        return [{"width": w, "height": h, "boxes": d.to_records()} for d, (w, h) in zip(found, sizes)]

    def segment_pixels(self, pixels, sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        """Masks of every word, per preprocessed image of the given (width, height)."""
        import torch

        with torch.inference_mode():
            images = self._encode_images(pixels.to(self.device))
            return [self._masks(images, row, size) for row, size in enumerate(sizes)]

    def segment(self, image) -> Detections:
        """The masks of every word in one RGB PIL image (already upright)."""
        import torch

        pixels = torch.stack([self.make_preprocess()(image)])
        return self.segment_pixels(pixels, [image.size])[0]

    def _detections(self, masks: np.ndarray, word_index: Sequence[int], scores: Sequence[float]) -> Detections:
        if not len(word_index):
            return Detections.empty(self.words, with_scores=True, with_masks=True)
        labels = [self.words[i] for i in word_index]
        return Detections.from_masks(masks, labels, np.asarray(scores, np.float64), classes=self.words)

    def _encode_images(self, pixels):
        raise NotImplementedError

    def _masks(self, images, row: int, size: tuple[int, int]) -> Detections:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, {list(self.words)!r})"


class Sam3Segmenter(WordSegmenter):
    """SAM3: instance masks per word (``post_process_instance_segmentation``)."""

    model_class = "Sam3Model"
    processor_class = "Sam3Processor"
    what = "a SAM3 segmenter"

    @cached_property
    def text_features(self):
        """The words through SAM3's text encoder, once: (features output, attention mask)."""
        import torch

        tokens = self.processor(text=list(self.words), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            features = self.model.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
        return features, tokens["attention_mask"]

    def _encode_images(self, pixels):
        return self.model.get_vision_features(pixel_values=pixels)

    def _masks(self, images, row: int, size: tuple[int, int]) -> Detections:
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        text, attention_mask = self.text_features
        count = len(self.words)
        # this image's features, shared (not copied) by every word's row of the batch
        vision = Sam3VisionEncoderOutput(
            fpn_hidden_states=tuple(_row(t, row, count) for t in images.fpn_hidden_states),
            fpn_position_encoding=tuple(_row(t, row, count) for t in images.fpn_position_encoding),
        )
        output = self.model(vision_embeds=vision, text_embeds=text, attention_mask=attention_mask)
        width, height = size
        found = self.processor.post_process_instance_segmentation(
            output, threshold=self.threshold, mask_threshold=self.mask_threshold, target_sizes=[(height, width)] * count
        )
        masks = [r["masks"].bool().cpu().numpy() for r in found]
        word_index = [i for i, r in enumerate(found) for _ in range(len(r["scores"]))]
        scores = [float(s) for r in found for s in r["scores"].float().cpu()]
        return self._detections(np.concatenate(masks) if word_index else None, word_index, scores)


class ClipSegSegmenter(WordSegmenter):
    """CLIPSeg: one semantic mask per word (sigmoid of the heatmap at the image size)."""

    model_class = "CLIPSegForImageSegmentation"
    processor_class = "CLIPSegProcessor"
    what = "a CLIPSeg segmenter"

    @cached_property
    def text_features(self):
        """The words' conditional embeddings (CLIPSeg's text projection), once."""
        import torch

        tokens = self.processor(text=list(self.words), padding="max_length", return_tensors="pt").to(self.device)
        with torch.inference_mode():
            return self.model.clip.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).pooler_output

    def _encode_images(self, pixels):
        """The activations CLIPSeg's decoder reads (``extract_layers`` of the vision tower)."""
        output = self.model.clip.get_image_features(
            pixel_values=pixels, interpolate_pos_encoding=True, output_hidden_states=True
        )
        return [output.hidden_states[i + 1] for i in self.model.extract_layers]

    def _masks(self, images, row: int, size: tuple[int, int]) -> Detections:
        conditional = self.text_features
        activations = [_row(a, row, len(self.words)) for a in images]
        logits = self.model.decoder(activations, conditional).logits  # (words, h, w)
        probabilities = heatmap_probabilities(logits, size).cpu().numpy()
        masks = probabilities > self.mask_threshold
        scores = probabilities.reshape(len(self.words), -1).max(axis=1)
        keep = [i for i in range(len(self.words)) if masks[i].any() and scores[i] > self.threshold]
        return self._detections(masks[keep], keep, scores[keep])


def heatmap_probabilities(logits, size: tuple[int, int]):
    """(n, h, w) probabilities at the image's (width, height): the logits resized bilinearly
    (``align_corners=False``), then a sigmoid."""
    import torch

    width, height = size
    resized = torch.nn.functional.interpolate(
        logits[:, None], size=(height, width), mode="bilinear", align_corners=False
    )
    return resized[:, 0].sigmoid()


def _row(tensor, row: int, count: int):
    """Row ``row`` of a batch, repeated ``count`` times as a view (tensors without a batch of
    their own, such as shared position encodings, are expanded as they are)."""
    part = tensor[row : row + 1] if tensor.shape[0] > 1 else tensor
    return part.expand(count, *part.shape[1:])


WORD_SEGMENTERS: dict[str, type[WordSegmenter]] = {"sam3": Sam3Segmenter, "clipseg": ClipSegSegmenter}


def word_segmenter(model: str, words: Sequence[str], hf: HFModel | None = None, **options) -> WordSegmenter:
    """The text-prompted segmenter for ``model``'s type (``WORD_SEGMENTERS``)."""
    hf = hf or HFModel(str(model), kind="hf-segmenter", what="a segmenter")
    cls = WORD_SEGMENTERS.get(hf.model_type)
    if cls is None:
        raise ModelNotFoundError(
            f"{model} is a '{hf.model_type}' model; word prompts need {' or '.join(WORD_SEGMENTERS)}"
        )
    hf.what = cls.what
    return cls(model, words, hf=hf, **options)
