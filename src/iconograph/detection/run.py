"""Detection over a collection: cached, batched, one result per image in input order; writers.

JSONL record (the command-line contract)::

    {"path": "...", "boxes": [{"label": "eagle", "score": 0.41, "xyxy": [x1, y1, x2, y2]}, ...],
     "error": null, "width": 640, "height": 480}

``xyxy`` in pixels of the upright (EXIF-rotated) image, boxes sorted by score. An unreadable
file has ``"boxes": []`` and a one-line ``"error"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from iconograph.boxes import FORMATS, BoxDataset, Detections, ImageBoxes
from iconograph.detection.owl import DEFAULT_DETECTOR, OwlDetector
from iconograph.engine.files import RecordWriter
from iconograph.engine.jobs import ImageJobRunner
from iconograph.reading.sources import Item, read_collection

OUTPUT_FORMATS = ("jsonl",) + FORMATS


@dataclass(frozen=True)
class DetectionResult:
    path: str
    detections: Detections | None
    width: int | None = None
    height: int | None = None
    error: str | None = None

    def to_record(self) -> dict:
        return {
            "path": self.path,
            "boxes": self.detections.to_records() if self.detections is not None else [],
            "error": self.error,
            "width": self.width,
            "height": self.height,
        }


def iter_detections(
    items: Sequence[Item | str], detector: OwlDetector, runner: ImageJobRunner
) -> Iterator[DetectionResult]:
    """Run a prepared detector over items (through the runner's cache); NMS after the cache."""
    paths = [item.path if isinstance(item, Item) else str(item) for item in items]
    for result in runner.run(paths):
        if result.error is not None:
            yield DetectionResult(result.path, None, error=result.error)
            continue
        candidates = Detections.from_records(result.value["boxes"], classes=detector.classes_)
        yield DetectionResult(result.path, detector.finish(candidates), result.value["width"], result.value["height"])


def detect(
    sources: str | Iterable[str],
    queries: Sequence[str] = (),
    *,
    model: str = DEFAULT_DETECTOR,
    image_queries: str | Path | None = None,
    threshold: float = 0.1,
    nms_iou: float = 0.5,
    clip: bool = True,
    device: str | None = None,
    **runner_options,
) -> list[DetectionResult]:
    """Open-vocabulary detection for every image in ``sources``.

    >>> results = ig.detect("coins/", ["zeus", "eagle", "patera"], model="google/owlv2-base-patch16-ensemble")
    >>> results[0].detections.xyxy, results[0].detections.labels

    ``runner_options`` go to :class:`~iconograph.engine.jobs.ImageJobRunner` (``store``,
    ``use_cache``, ``batch_size``, ``workers``, ``progress``).
    """
    detector = OwlDetector(
        model,
        queries=queries,
        image_queries=image_queries,
        threshold=threshold,
        nms_iou=nms_iou,
        clip=clip,
        device=device,
    ).prepare()
    runner = ImageJobRunner(detector, description="detecting", **runner_options)
    return list(iter_detections(read_collection(sources), detector, runner))


class DetectionWriter:
    """Streams results as JSONL (a :class:`~iconograph.engine.files.RecordWriter`: a file, or
    stdout when ``out`` is None) or collects them into a COCO / VOC / YOLO dataset written on a
    clean exit."""

    def __init__(self, out: str | Path | None, format: str = "jsonl", classes: Sequence[str] = ()):
        if format not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {format!r}; use one of {', '.join(OUTPUT_FORMATS)}")
        if format != "jsonl" and out is None:
            raise ValueError(f"--format {format} needs --out")
        self.out = Path(out) if out is not None else None
        self.format = format
        self.classes = tuple(classes)
        self.count = 0
        self.failed: list[DetectionResult] = []
        self._images: list[ImageBoxes] = []
        self._records = RecordWriter(self.out) if format == "jsonl" else None

    def __enter__(self) -> DetectionWriter:
        if self._records is not None:
            self._records.__enter__()
        return self

    def write(self, result: DetectionResult) -> None:
        self.count += 1
        if result.error is not None:
            self.failed.append(result)
        if self._records is not None:
            self._records.write(result.to_record())
        elif result.error is None:
            self._images.append(ImageBoxes(result.path, result.width, result.height, result.detections))

    def __exit__(self, *exc_info) -> None:
        if self._records is not None:
            self._records.__exit__(*exc_info)
        elif exc_info[0] is None:
            BoxDataset(self._images, self.classes).write(self.out, self.format)


def output_format(out: Path | None, format: str | None) -> str:
    """``--format`` when given, else by the file suffix (.jsonl/.ndjson -> jsonl, .json -> coco)."""
    if format:
        if format.lower() not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {format!r}; use one of {', '.join(OUTPUT_FORMATS)}")
        if format.lower() != "jsonl" and out is None:
            raise ValueError(f"--format {format} needs --out")
        return format.lower()
    if out is None or out.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    if out.suffix.lower() == ".json":
        return "coco"
    raise ValueError(f"{out}: give --format jsonl|coco|voc|yolo (a folder is written for voc and yolo)")
