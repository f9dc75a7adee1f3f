"""Open-vocabulary detection with OWL-ViT and OWLv2 (transformers).

Boxes and scores are those of transformers' ``zero-shot-object-detection`` pipeline: for every
query, each predicted box whose sigmoid score is above ``threshold`` (so one box may carry several
labels), in pixels of the upright image, scaled by the image processor's own post-processing
(OWLv2 pads to a square; its boxes are scaled accordingly). Unlike the pipeline, which runs the
whole model once per label, the image is encoded once per batch and compared with every query.
Class-wise NMS (torchvision) runs afterwards.

Queries are texts, or example images (``image_queries``): each example contributes the class
embedding of the box the model picks in it (``embed_image_query``, as in
``image_guided_detection``), labelled with its file stem, or its folder name when examples sit in
``DIR/<label>/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from iconograph.backends.base import DECODE_VERSION, ModelNotFoundError, resolve_device
from iconograph.backends.hf import HFModel, image_preprocess, pooled
from iconograph.boxes import Detections
from iconograph.engine.fingerprint import digest
from iconograph.errors import UserError
from iconograph.reading.decode import DecodeError, read_image
from iconograph.reading.sources import walk_images

DEFAULT_DETECTOR = "google/owlvit-base-patch32"
OWL_MODEL_TYPES = ("owlvit", "owlv2")


class QueryError(UserError):
    """Unusable queries (none given, unreadable example images)."""


class OwlDetector:
    """``OwlDetector(model, queries=[...], image_queries=DIR).prepare()`` then ``predict(images)``."""

    def __init__(
        self,
        model: str = DEFAULT_DETECTOR,
        *,
        queries: Sequence[str] = (),
        image_queries: str | Path | None = None,
        threshold: float = 0.1,
        nms_iou: float = 0.5,
        clip: bool = True,
        device: str | None = None,
    ):
        self.spec = str(model)
        self.queries = [q.strip() for q in queries if q.strip()]
        self.image_queries = Path(image_queries) if image_queries else None
        self.threshold = float(threshold)
        self.nms_iou = float(nms_iou)
        self.clip = clip
        self.device = resolve_device(device)
        self.hf = HFModel(self.spec, kind="hf-detector", what="an OWL-ViT/OWLv2 detector")
        if self.hf.model_type not in OWL_MODEL_TYPES:
            raise ModelNotFoundError(
                f"{self.spec} is a '{self.hf.model_type}' model; detection needs OWL-ViT or OWLv2 (model_type owlvit/owlv2)"
            )

    # ---- model, processor, fingerprints ---------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return self.hf.fingerprint

    @cached_property
    def preprocess_fingerprint(self) -> str:
        return self.hf.preprocess_fingerprint(type(self.image_processor).__name__)

    @cached_property
    def model(self):
        return self.hf.load("AutoModelForZeroShotObjectDetection", self.device)

    @cached_property
    def image_processor(self):
        return self.hf.from_pretrained("AutoImageProcessor")

    @cached_property
    def tokenizer(self):
        return self.hf.from_pretrained("AutoTokenizer")

    def make_preprocess(self) -> Callable:
        return image_preprocess(self.image_processor)

    # ---- queries ------------------------------------------------------------------------------

    def prepare(self) -> OwlDetector:
        """Embed the text and image queries (learned state: ``classes_``, ``query_class_``,
        ``query_embeds_``, ``query_fingerprint_``)."""
        import torch

        labels, embeds, identity = [], [], []
        if self.queries:
            labels += self.queries
            embeds.append(self._embed_texts(self.queries))
            identity.append(("text", self.queries))
        if self.image_queries is not None:
            example_labels, images, hashes = read_image_queries(self.image_queries)
            labels += example_labels
            embeds.append(self._embed_images(images))
            identity.append(("image", example_labels, hashes))
        if not labels:
            raise QueryError("give at least one text query (--queries) or example image (--image-queries)")
        self.classes_ = tuple(dict.fromkeys(labels))
        self.query_class_ = np.array([self.classes_.index(label) for label in labels], dtype=np.int64)
        self.query_embeds_ = torch.cat(embeds)
        self.query_fingerprint_ = digest(identity)
        return self

    def _embed_texts(self, texts: Sequence[str]):
        import torch

        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            output = self.model.base_model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            )
            features = pooled(output)
            # as the model's own forward: projected text embeddings, L2-normalised
            return features / torch.linalg.norm(features, ord=2, dim=-1, keepdim=True)

    def _embed_images(self, images):
        import torch

        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            feature_map = self.model.image_embedder(pixel_values=pixels)[0]
            n, h, w, d = feature_map.shape
            query_embeds, _, _ = self.model.embed_image_query(feature_map.reshape(n, h * w, d), feature_map)
            return query_embeds.reshape(n, -1)

    # ---- inference ----------------------------------------------------------------------------

    @property
    def cache_name(self) -> str:
        self._require_prepared()
        settings = (self.query_fingerprint_, self.threshold, self.clip)
        return "detect_" + digest(self.fingerprint, self.preprocess_fingerprint, settings, DECODE_VERSION)

    def raw_outputs(self, pixels):
        """Per-patch logits (batch, patches, queries) and boxes (batch, patches, 4; cx cy w h in 0..1)."""
        import torch

        self._require_prepared()
        with torch.inference_mode():
            pixels = pixels.to(self.device)
            feature_map = self.model.image_embedder(pixel_values=pixels)[0]
            b, h, w, d = feature_map.shape
            feats = feature_map.reshape(b, h * w, d)
            queries = self.query_embeds_.to(self.device)[None].expand(b, -1, -1)
            logits, _ = self.model.class_predictor(feats, queries)
            boxes = self.model.box_predictor(feats, feature_map)
        return logits.float().cpu(), boxes.float().cpu()

    def detect_pixels(self, pixels, sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        """Candidates before NMS for preprocessed images of the given (width, height)."""
        logits, boxes = self.raw_outputs(pixels)
        target_sizes = [(height, width) for width, height in sizes]
        per_image: list[list[tuple]] = [[] for _ in sizes]
        for q in range(logits.shape[-1]):
            # the processor's own post-processing, one query at a time, as the pipeline runs it
            outputs = SimpleNamespace(logits=logits[..., q : q + 1], pred_boxes=boxes)
            results = self.image_processor.post_process_object_detection(
                outputs, threshold=self.threshold, target_sizes=target_sizes
            )
            for found, result in zip(per_image, results):
                found.append((result["boxes"].double().numpy(), result["scores"].double().numpy(), q))
        detections = []
        for found, (width, height) in zip(per_image, sizes):
            xyxy = np.concatenate([b for b, _, _ in found]).reshape(-1, 4)
            scores = np.concatenate([s for _, s, _ in found])
            class_id = np.concatenate([np.full(len(s), self.query_class_[q]) for _, s, q in found]).astype(np.int64)
            found_boxes = Detections(xyxy, class_id, self.classes_, scores)
            detections.append(found_boxes.clip(width, height) if self.clip else found_boxes)
        return detections

    def run_batch(self, pixels, sizes: Sequence[tuple[int, int]]) -> list[dict]:
        """Cacheable records: image size and the candidates before NMS."""
        return [
            {"width": w, "height": h, "boxes": d.to_records()}
            for d, (w, h) in zip(self.detect_pixels(pixels, sizes), sizes)
        ]

    def finish(self, candidates: Detections) -> Detections:
        """Class-wise NMS (skipped when ``nms_iou >= 1``), sorted by score."""
        if self.nms_iou >= 1:
            return candidates.sorted()
        return candidates.nms(self.nms_iou)

    def predict(self, images: Sequence) -> list[Detections]:
        """Detections (after NMS) for RGB PIL images already upright (see ``iconograph.read_image``)."""
        import torch

        preprocess = self.make_preprocess()
        pixels = torch.stack([preprocess(image) for image in images])
        return [self.finish(d) for d in self.detect_pixels(pixels, [image.size for image in images])]

    def _require_prepared(self) -> None:
        if not hasattr(self, "query_embeds_"):
            raise RuntimeError("call prepare() first: the queries are not embedded yet")

    def __repr__(self) -> str:
        return f"OwlDetector({self.spec!r}, queries={self.queries!r}, image_queries={self.image_queries})"


def read_image_queries(folder: str | Path) -> tuple[list[str], list, list[str]]:
    """Example images: ``DIR/<label>.jpg`` or ``DIR/<label>/*.jpg`` -> (labels, images, content hashes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QueryError(f"{folder}: --image-queries must be a folder of example images")
    labels, images, hashes = [], [], []
    for path in walk_images(folder):
        relative = path.relative_to(folder)
        try:
            decoded = read_image(path)
        except DecodeError as exc:
            raise QueryError(f"{path}: example image unreadable: {exc}") from None
        labels.append(relative.parts[0] if len(relative.parts) > 1 else path.stem)
        images.append(decoded.image)
        hashes.append(decoded.content_hash)
    if not images:
        raise QueryError(f"{folder}: no example images found")
    return labels, images, hashes
