"""Classify the object, not the photo: embed each image's box (or boxes) instead of the image.

The boxes come from a box file (a detect / segment JSONL, or a COCO / VOC / YOLO dataset, read as
``segment --boxes`` reads them) or from running a detector on one word (``crop_query`` with
``detector``: OWL-ViT / OWLv2 boxes, or SAM3 / CLIPSeg masks). Boxes are in the upright image's
pixels (EXIF orientation applied), as iconograph's detectors give them.

``mode="largest"`` keeps the largest box of an image, ``"each"`` every box (one record each). A
box is widened by ``margin`` times its width and height on every side, clipped to the image and
rounded outwards to whole pixels; that region of the upright, full-size image is what is
embedded. With ``mask=True`` the pixels outside the box's mask (when it has one) are set to black
first.

Each crop is one item of the shared data path (:mod:`iconograph.engine.jobs`): it is cached in
the model's image cache under a key made of the image's content hash, the box, the margin and the
mask, so a crop is computed once and a changed box is computed again. An image without a box is
an error record ("no box to crop").
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iconograph.engine.fingerprint import digest
from iconograph.errors import OptionError

CROP_MODES = ("largest", "each")
ITEM_SEPARATOR = "\x00"  # cannot occur in a file path: "path\x00index" names one crop
NO_BOX = "no box to crop"


@dataclass(frozen=True)
class CropOptions:
    """Where the boxes come from and how they are cut out."""

    boxes: str | Path | None = None
    query: str | None = None
    detector: str | None = None
    mode: str = "largest"
    margin: float = 0.05
    mask: bool = False

    def __post_init__(self):
        if (self.boxes is None) == (self.query is None):
            raise OptionError("give --crop BOXES or --crop-query WORD (with --detector), one of them")
        if self.mode not in CROP_MODES:
            raise OptionError(f"--crop-mode must be one of {', '.join(CROP_MODES)}, not {self.mode!r}")
        if not 0.0 <= self.margin < float("inf"):
            raise OptionError(f"--crop-margin {self.margin} is not a number from 0 up")


def crop_options(
    crop: str | Path | None = None,
    crop_query: str | None = None,
    detector: str | None = None,
    crop_mode: str = "largest",
    crop_margin: float = 0.05,
    crop_mask: bool = False,
) -> CropOptions | None:
    """The crop settings of a command, or None when it crops nothing."""
    if crop is None and crop_query is None:
        return None
    return CropOptions(crop, crop_query, detector, crop_mode, float(crop_margin), bool(crop_mask))


CROP_KEYWORDS = ("crop", "crop_query", "detector", "crop_mode", "crop_margin", "crop_mask")


def pop_crop_options(options: dict) -> CropOptions | None:
    """The crop keywords taken out of a command's keyword arguments, as :func:`crop_options`."""
    return crop_options(**{name: options.pop(name) for name in CROP_KEYWORDS if name in options})


@dataclass(frozen=True)
class Crop:
    """One box of one image: what it came from and the region embedded."""

    path: str
    box: tuple[float, float, float, float]  # the box as given (x1, y1, x2, y2)
    margin: float
    mask: dict | None = None  # COCO RLE at the image's size, when blanking outside it

    @property
    def key(self) -> str:
        return digest("crop", self.box, self.margin, self.mask)

    def region(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box widened by the margin, clipped to the image, rounded outwards to pixels."""
        x1, y1, x2, y2 = self.box
        dx, dy = (x2 - x1) * self.margin, (y2 - y1) * self.margin
        left, top = max(0, math.floor(x1 - dx)), max(0, math.floor(y1 - dy))
        right, bottom = min(width, math.ceil(x2 + dx)), min(height, math.ceil(y2 + dy))
        if right <= left or bottom <= top:
            raise ValueError(f"box {list(self.box)} is outside the {width}x{height} image")
        return left, top, right, bottom

    def cut(self, image):
        """The crop of an upright RGB PIL image (outside the mask black, with a mask)."""
        region = self.region(*image.size)
        if self.mask is not None:
            from PIL import Image

            from iconograph.boxes.masks import decode

            inside = decode([self.mask])[0]
            if inside.shape != (image.size[1], image.size[0]):
                raise ValueError(f"mask of size {inside.shape[::-1]} for a {image.size[0]}x{image.size[1]} image")
            image = Image.composite(image, Image.new("RGB", image.size), Image.fromarray(inside))
        return image.crop(region)


def plan_crops(paths: Sequence[str], options: CropOptions, **runner_options) -> list[list[Crop]]:
    """The crops of every image, in order (an empty list: no box for that image)."""
    found = _boxes(paths, options, runner_options)
    return [_choose(path, found.get(path), options) for path in paths]


def _boxes(paths: Sequence[str], options: CropOptions, runner_options: dict) -> dict:
    """path -> Detections (masks kept where there are any)."""
    from iconograph.reading.sources import Item
    from iconograph.segmentation.run import match_prompts, read_box_prompts

    if options.boxes is not None:
        keyed = match_prompts([Item(p) for p in paths], read_box_prompts(options.boxes, keep_masks=options.mask))
        from iconograph.reading.sources import path_key

        return {p: keyed[path_key(p)] for p in paths if path_key(p) in keyed}
    return _detect(paths, options, runner_options)


def _detect(paths: Sequence[str], options: CropOptions, runner_options: dict) -> dict:
    from iconograph.backends.hf import HFModel
    from iconograph.detection.owl import DEFAULT_DETECTOR
    from iconograph.segmentation.words import WORD_SEGMENTERS

    detector = options.detector or DEFAULT_DETECTOR
    if HFModel(str(detector), kind="hf-segmenter").model_type in WORD_SEGMENTERS:
        from iconograph.segmentation import segment

        results = segment(paths, queries=[options.query], model=str(detector), **runner_options)
    else:
        from iconograph.detection.run import detect

        results = detect(paths, [options.query], model=str(detector), **runner_options)
    return {r.path: r.detections for r in results if r.detections is not None}


def _choose(path: str, detections, options: CropOptions) -> list[Crop]:
    if detections is None or not len(detections):
        return []
    masks = detections.masks if options.mask and detections.masks else None
    rows = range(len(detections))
    if options.mode == "largest":
        sides = detections.xyxy[:, 2:] - detections.xyxy[:, :2]
        rows = [int(np.argmax(np.clip(sides, 0, None).prod(axis=1)))]
    return [
        Crop(path, tuple(float(v) for v in detections.xyxy[i]), options.margin, masks[i] if masks else None)
        for i in rows
    ]


# ---- the image job ------------------------------------------------------------------------


class CropPreprocess:
    """``(item, image) -> pixels`` in the decoding workers: cut the item's crop, then the model's
    own preprocessing. Picklable (the crop table and the model's preprocessing)."""

    def __init__(self, crops: dict[str, Crop], preprocess):
        self.crops = crops
        self.preprocess = preprocess

    def __call__(self, item: str, image):
        return self.preprocess(self.crops[item].cut(image))


class CropEmbeddingJob:
    """The :class:`~iconograph.engine.embed.Embedder` as an image job over crop items."""

    def __init__(self, embedder, crops: dict[str, Crop]):
        self.embedder = embedder
        self.crops = crops

    @property
    def device(self) -> str:
        return self.embedder.device

    def make_preprocess(self):
        return self.embedder.make_preprocess()

    def make_item_preprocess(self) -> CropPreprocess:
        return CropPreprocess(self.crops, self.embedder.make_preprocess())

    def decode_min_size(self) -> None:
        return None  # boxes are in full-size pixels: decode exactly

    def before_compute(self, misses: int) -> None:
        self.embedder.before_compute(misses)

    def item_source(self, item: str) -> str:
        return self.crops[item].path

    def item_key(self, item: str, content_hash: str) -> str:
        return digest(content_hash, self.crops[item].key)

    def run_batch(self, pixels, sizes, keys):
        return self.embedder.run_batch(pixels, sizes)


def iter_crop_embeddings(embedder, paths: Sequence[str], options: CropOptions) -> Iterator:
    """:class:`~iconograph.engine.embed.ImageEmbeddings` chunk by chunk, one row per crop (each
    with its ``boxes`` entry), and one error row per image without a box."""
    from iconograph.engine.embed import _to_embeddings
    from iconograph.engine.jobs import ImageResult

    runner_options = {"store": embedder.store, "use_cache": embedder.use_cache, "progress": embedder.progress}
    paths = [str(p) for p in paths]
    planned = plan_crops(paths, options, **runner_options)
    crops = {}
    for i, image_crops in enumerate(planned):
        for k, crop in enumerate(image_crops):
            crops[f"{i}{ITEM_SEPARATOR}{k}"] = crop
    results = embedder.runner(CropEmbeddingJob(embedder, crops), "embedding crops").run(list(crops))
    rows: list[ImageResult] = []
    used: list[Crop | None] = []
    for path, image_crops in zip(paths, planned):
        if not image_crops:
            rows.append(ImageResult(str(path), None, NO_BOX))
            used.append(None)
        for crop in image_crops:
            result = next(results)
            rows.append(ImageResult(crop.path, result.value, result.error, result.cached, result.content_hash))
            used.append(crop)
        if len(rows) >= embedder.chunk_size:
            yield _with_boxes(_to_embeddings(rows), used, embedder)
            rows, used = [], []
    if rows or not paths:
        yield _with_boxes(_to_embeddings(rows), used, embedder)


def _with_boxes(chunk, crops: list[Crop | None], embedder):
    """The chunk with its rows' boxes and crop keys, and counts per crop (several crops share an
    image's hash)."""
    chunk.boxes = [list(c.box) if c is not None else None for c in crops]
    chunk.crop_keys = [c.key if c is not None else None for c in crops]
    chunk.computed = sum(e is None for e in chunk.errors) - chunk.cached
    return embedder.counted(chunk)
