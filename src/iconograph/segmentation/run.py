"""Segmentation over a collection: masks for boxes (a box file, or the detector run on queries);
cached, batched, one result per image in input order; JSONL / COCO / PNG label maps.

JSONL record: the detect record, each box with its mask and the mask's predicted IoU::

    {"path": "...", "boxes": [{"label": "coin", "score": 0.8, "xyxy": [...],
      "segmentation": {"size": [h, w], "counts": "..."}, "mask_score": 0.93}], "error": null,
     "width": 640, "height": 480}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from iconograph.backends.hf import HFModel
from iconograph.boxes import Detections, read_boxes
from iconograph.detection.owl import DEFAULT_DETECTOR
from iconograph.detection.run import Annotator, DetectionResult, DetectionWriter, choose_queries, output_format
from iconograph.engine.jobs import ImageJobRunner
from iconograph.engine.runs import RunStats
from iconograph.errors import OptionError
from iconograph.reading.sources import Item, path_key, read_collection
from iconograph.segmentation.auto import AutoMaskSegmenter, AutoMaskSettings
from iconograph.segmentation.sam import DEFAULT_SEGMENTER, box_segmenter
from iconograph.segmentation.words import WORD_SEGMENTERS, WordSegmenter, word_segmenter

SEGMENT_FORMATS = ("jsonl", "coco", "png")
DETECTOR_THRESHOLD = 0.1  # the detector's score threshold when queries are boxed first
WORD_THRESHOLD = 0.3  # a text-prompted segmenter's (SAM3's post-processing default)


@dataclass(frozen=True)
class SegmentationResult(DetectionResult):
    """A :class:`DetectionResult` whose boxes have masks; ``mask_scores`` in the boxes' order."""

    mask_scores: tuple[float | None, ...] = ()

    def to_record(self) -> dict:
        record = super().to_record()
        for box, score in zip(record["boxes"], self.mask_scores):
            if score is not None:  # box prompts: the kept mask's predicted IoU
                box["mask_score"] = score
        return record


def read_box_prompts(path: str | Path, keep_masks: bool = False) -> dict[str, Detections]:
    """Box prompts by image (:func:`path_key`, and by file name where that is unique) from a
    detect JSONL or a COCO / VOC / YOLO box dataset (their masks too, with ``keep_masks``)."""
    from iconograph.evaluation.detections import is_detection_file, read_detection_records

    path = Path(path)
    if not path.exists():
        raise OptionError(f"box file {path}: no such file or folder")
    dataset = read_detection_records(path)[0] if is_detection_file(path) else read_boxes(path)
    prompts: dict[str, Detections] = {}
    names: dict[str, list[Detections]] = {}
    for img in dataset:
        detections = img.detections if keep_masks else img.detections.without_masks()
        prompts[path_key(img.path)] = detections
        names.setdefault(Path(img.path).name, []).append(detections)
    for name, found in names.items():
        if len(found) == 1:
            prompts.setdefault("name:" + name, found[0])
    return prompts


def match_prompts(items: Sequence[Item], prompts: dict[str, Detections]) -> dict[str, Detections]:
    """The prompts of each item, by its path key (exact path first, then a unique file name)."""
    matched = {}
    for item in items:
        found = prompts.get(path_key(item.path)) or prompts.get("name:" + Path(item.path).name)
        if found is not None:
            matched[path_key(item.path)] = found
    return matched


def iter_segmentations(items: Sequence[Item | str], runner: ImageJobRunner) -> Iterator[SegmentationResult]:
    paths = [item.path if isinstance(item, Item) else str(item) for item in items]
    for result in runner.run(paths):
        if result.error is not None:
            yield SegmentationResult(result.path, None, error=result.error)
            continue
        records = result.value["boxes"]  # sorted by score, as cached
        detections = Detections.from_records(records)
        if detections.masks is None:
            detections = Detections(detections.xyxy, detections.class_id, detections.classes, detections.scores, ())
        yield SegmentationResult(
            result.path,
            detections,
            result.value["width"],
            result.value["height"],
            mask_scores=tuple(r.get("mask_score") for r in records),
        )


def segment(
    sources: str | Iterable[str],
    *,
    boxes: str | Path | None = None,
    queries: str | Sequence[str] | None = None,
    queries_file: str | Path | None = None,
    model: str = DEFAULT_SEGMENTER,
    detector: str = DEFAULT_DETECTOR,
    threshold: float | None = None,
    nms_iou: float = 0.5,
    mask_threshold: float = 0.5,
    auto: bool | AutoMaskSettings | dict = False,
    device: str | None = None,
    **runner_options,
) -> list[SegmentationResult]:
    """Masks for every image in ``sources``.

    >>> results = ig.segment("coins/", boxes="boxes.jsonl", model="facebook/sam-vit-base")
    >>> results[0].detections.mask_array()  # (n, h, w) booleans, one per box

    Prompts: ``boxes`` (a detect JSONL, or a COCO / VOC / YOLO box dataset), or ``queries`` (a
    list or comma-separated string; or ``queries_file``) that the OWL ``detector`` boxes first
    (``threshold``, default 0.1, and ``nms_iou`` as for :func:`iconograph.detect`). Box prompts
    go to a SAM / SlimSAM or SAM2 ``model`` (by the folder's ``model_type``).

    With a text-prompted ``model`` (SAM3, CLIPSeg: chosen by the folder's ``model_type``) the
    ``queries`` are segmented directly, no detector: SAM3 gives instance masks per word (scores
    above ``threshold``, default 0.3), CLIPSeg one semantic mask per word (heatmap probabilities
    above ``mask_threshold``); see :mod:`iconograph.segmentation.words`.

    ``auto=True`` (or an :class:`~iconograph.segmentation.auto.AutoMaskSettings`, or a dict of
    its fields) segments everything: the ``mask-generation`` pipeline's point grid with a SAM
    ``model``, no prompts (:mod:`iconograph.segmentation.auto`). ``runner_options`` go to
    :class:`~iconograph.engine.jobs.ImageJobRunner` (``store``, ``use_cache``, ``batch_size``,
    ``workers``, ``progress``).
    """
    items, runner = _prepare(
        sources,
        boxes,
        queries,
        queries_file,
        model,
        detector,
        threshold,
        nms_iou,
        mask_threshold,
        auto,
        device,
        runner_options,
    )
    return list(iter_segmentations(items, runner))


def run_segmentation(
    sources: str | Iterable[str],
    *,
    boxes: str | Path | None = None,
    queries: str | Sequence[str] | None = None,
    queries_file: str | Path | None = None,
    model: str = DEFAULT_SEGMENTER,
    detector: str = DEFAULT_DETECTOR,
    threshold: float | None = None,
    nms_iou: float = 0.5,
    mask_threshold: float = 0.5,
    auto: bool | AutoMaskSettings | dict = False,
    device: str | None = None,
    out: str | Path | None = None,
    format: str | None = None,
    annotate: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    **runner_options,
) -> RunStats:
    """:func:`segment` written as it runs (``iconograph segment``): JSONL to ``out`` or stdout, a
    COCO instance-segmentation file, or PNG label maps in a folder (``format``, default by
    ``out``'s suffix); with ``annotate``, a copy of each image with its masks drawn."""
    fmt = _segment_format(out, format)
    items, runner = _prepare(
        sources,
        boxes,
        queries,
        queries_file,
        model,
        detector,
        threshold,
        nms_iou,
        mask_threshold,
        auto,
        device,
        runner_options,
    )
    log = log or (lambda message: None)
    count = 0
    annotator = Annotator(Path(annotate), log) if annotate is not None else None
    with DetectionWriter(out, fmt, (), formats=SEGMENT_FORMATS) as writer:
        for result in iter_segmentations(items, runner):
            writer.write(result)
            count += len(result.detections) if result.detections is not None else 0
            if annotator is not None and result.error is None:
                annotator.save(result)
    if fmt != "jsonl":
        for failed in writer.failed:
            log(f"{failed.path}: {failed.error}")
    return RunStats(
        len(items), len(writer.failed), runner.stats.computed, runner.stats.cached, out, "computed", (f"{count} masks",)
    )


def _word_segmenter(model, boxes, texts, threshold, mask_threshold, device) -> WordSegmenter | None:
    """The text-prompted segmenter when ``model`` is one (SAM3, CLIPSeg), else None."""
    hf = HFModel(str(model), kind="hf-segmenter", what="a segmenter")
    if hf.model_type not in WORD_SEGMENTERS:
        return None
    if boxes is not None or not texts:
        raise OptionError(f"{model} is a {hf.model_type} model, prompted by words: give --queries, not --boxes")
    threshold = WORD_THRESHOLD if threshold is None else threshold
    return word_segmenter(str(model), texts, hf=hf, threshold=threshold, mask_threshold=mask_threshold, device=device)


def _segment_format(out: str | Path | None, format: str | None) -> str:
    return output_format(Path(out) if out is not None else None, format, formats=SEGMENT_FORMATS)


def _prepare(
    sources,
    boxes,
    queries,
    queries_file,
    model,
    detector,
    threshold,
    nms_iou,
    mask_threshold,
    auto,
    device,
    runner_options,
):
    texts = choose_queries(queries, queries_file)
    if boxes is None and not texts and not auto:
        raise OptionError("give --boxes FILE or --queries (boxed by --detector first), one of them (or --auto)")
    if auto is not False and auto is not None:
        if boxes is not None or texts:
            raise OptionError("--auto segments everything: give no --boxes or --queries with it")
        settings = (
            auto if isinstance(auto, AutoMaskSettings) else AutoMaskSettings(**(auto if auto is not True else {}))
        )
        job = AutoMaskSegmenter(model, settings, device=device)
        return read_collection(sources), ImageJobRunner(job, description="segmenting", **runner_options)
    words = _word_segmenter(model, boxes, texts, threshold, mask_threshold, device)
    if words is not None:
        return read_collection(sources), ImageJobRunner(words, description="segmenting", **runner_options)
    threshold = DETECTOR_THRESHOLD if threshold is None else threshold
    if (boxes is None) == (not texts):
        raise OptionError("give --boxes FILE or --queries (boxed by --detector first), one of them (or --auto)")
    segmenter = box_segmenter(model, device=device)  # SAM or SAM2; checks the model before any detection runs
    items = read_collection(sources)
    if boxes is not None:
        prompts = match_prompts(items, read_box_prompts(boxes))
    else:
        from iconograph.detection.run import detect

        found = detect(
            [item.path for item in items],
            texts,
            model=detector,
            threshold=threshold,
            nms_iou=nms_iou,
            device=device,
            **runner_options,
        )
        prompts = {path_key(r.path): r.detections for r in found if r.detections is not None}
    segmenter.set_prompts(prompts)
    return items, ImageJobRunner(segmenter, description="segmenting", **runner_options)
