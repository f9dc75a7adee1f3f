"""Detection over a collection: cached, batched, one result per image in input order; writers.

JSONL record (the command-line contract)::

    {"path": "...", "boxes": [{"label": "eagle", "score": 0.41, "xyxy": [x1, y1, x2, y2]}, ...],
     "error": null, "width": 640, "height": 480}

``xyxy`` in pixels of the upright (EXIF-rotated) image, boxes sorted by score. An unreadable
file has ``"boxes": []`` and a one-line ``"error"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from iconograph.boxes import FORMATS, BoxDataset, Detections, ImageBoxes
from iconograph.detection.owl import DEFAULT_DETECTOR, OwlDetector
from iconograph.engine.files import RecordWriter
from iconograph.engine.jobs import ImageJobRunner
from iconograph.engine.runs import RunStats
from iconograph.errors import OptionError
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
    queries: str | Sequence[str] | None = None,
    *,
    queries_file: str | Path | None = None,
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

    ``queries`` is a list or a comma-separated string; or give ``queries_file`` (one per line),
    and/or ``image_queries`` (a folder of example images). ``runner_options`` go to
    :class:`~iconograph.engine.jobs.ImageJobRunner` (``store``, ``use_cache``, ``batch_size``,
    ``workers``, ``progress``).
    """
    texts = choose_queries(queries, queries_file)
    items, detector, runner = _prepare(
        sources, texts, model, image_queries, threshold, nms_iou, clip, device, runner_options
    )
    return list(iter_detections(items, detector, runner))


def run_detection(
    sources: str | Iterable[str],
    queries: str | Sequence[str] | None = None,
    *,
    queries_file: str | Path | None = None,
    model: str = DEFAULT_DETECTOR,
    image_queries: str | Path | None = None,
    threshold: float = 0.1,
    nms_iou: float = 0.5,
    clip: bool = True,
    device: str | None = None,
    out: str | Path | None = None,
    format: str | None = None,
    annotate: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    **runner_options,
) -> RunStats:
    """:func:`detect` written as it runs (``iconograph detect``): JSONL to ``out`` or stdout, or a
    COCO / VOC / YOLO dataset (``format``, default by ``out``'s suffix); with ``annotate``, a copy
    of each image with its boxes drawn goes to that folder. ``log`` gets the lines a user should
    see that the output does not hold (failed images of a box dataset, images not annotated)."""
    texts = choose_queries(queries, queries_file)
    fmt = output_format(Path(out) if out is not None else None, format)
    items, detector, runner = _prepare(
        sources, texts, model, image_queries, threshold, nms_iou, clip, device, runner_options
    )
    log = log or (lambda message: None)
    boxes = 0
    annotator = Annotator(Path(annotate), log) if annotate is not None else None
    with DetectionWriter(out, fmt, detector.classes_) as writer:
        for result in iter_detections(items, detector, runner):
            writer.write(result)
            boxes += len(result.detections) if result.detections is not None else 0
            if annotator is not None and result.error is None:
                annotator.save(result)
    if fmt != "jsonl":
        for failed in writer.failed:
            log(f"{failed.path}: {failed.error}")
    return RunStats(
        len(items), len(writer.failed), runner.stats.computed, runner.stats.cached, out, "computed", (f"{boxes} boxes",)
    )


def _prepare(sources, texts, model, image_queries, threshold, nms_iou, clip, device, runner_options):
    items = read_collection(sources)
    detector = OwlDetector(
        model,
        queries=texts,
        image_queries=image_queries,
        threshold=threshold,
        nms_iou=nms_iou,
        clip=clip,
        device=device,
    ).prepare()
    return items, detector, ImageJobRunner(detector, description="detecting", **runner_options)


def choose_queries(queries: str | Sequence[str] | None, queries_file: str | Path | None) -> list[str]:
    """Text queries from a list, a comma-separated string or a file (one per line), not two of them."""
    from iconograph.classification.zeroshot import parse_label_list, read_labels_file

    if queries is not None and queries_file is not None:
        raise OptionError("give --queries or --queries-file, not both")
    if queries_file is not None:
        return read_labels_file(queries_file)
    if isinstance(queries, str):
        return parse_label_list(queries)
    return list(queries or ())


class Annotator:
    """Saves a copy of each image with its boxes drawn into one folder, never over an original."""

    def __init__(self, folder: Path, log: Callable[[str], None]):
        self.folder = folder
        self.log = log
        self.used: dict[str, int] = {}

    def save(self, result: DetectionResult) -> None:
        from iconograph.detection.annotate import save_annotated
        from iconograph.reading.decode import DecodeError, read_image

        path = Path(result.path)
        self.used[path.name] = self.used.get(path.name, 0) + 1  # the same name from two folders: name-2.jpg, ...
        count = self.used[path.name]
        target = self.folder / (path.name if count == 1 else f"{path.stem}-{count}{path.suffix}")
        if target.exists() and target.resolve() == path.resolve():
            raise OptionError(f"--annotate {self.folder} would overwrite the original {path}")
        try:
            save_annotated(read_image(path).image, result.detections, target)
        except DecodeError as exc:  # changed since it was detected
            self.log(f"{path}: not annotated: {exc}")


class DetectionWriter:
    """Streams results as JSONL (a :class:`~iconograph.engine.files.RecordWriter`: a file, or
    stdout when ``out`` is None) or collects them into a COCO / VOC / YOLO dataset written on a
    clean exit (its classes: ``classes``, then labels the results add, in order of appearance)."""

    def __init__(
        self,
        out: str | Path | None,
        format: str = "jsonl",
        classes: Sequence[str] = (),
        formats: Sequence[str] = OUTPUT_FORMATS,
    ):
        if format not in formats:
            raise OptionError(f"unknown output format {format!r}; use one of {', '.join(formats)}")
        if format != "jsonl" and out is None:
            raise OptionError(f"--format {format} needs --out")
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
            labels = (label for img in self._images for label in img.detections.labels)
            classes = tuple(dict.fromkeys((*self.classes, *labels)))
            BoxDataset(self._images, classes).write(self.out, self.format)


def output_format(out: Path | None, format: str | None, formats: Sequence[str] = OUTPUT_FORMATS) -> str:
    """``--format`` when given, else by the file suffix (.jsonl/.ndjson -> jsonl, .json -> coco)."""
    if format:
        if format.lower() not in formats:
            raise OptionError(f"unknown output format {format!r}; use one of {', '.join(formats)}")
        if format.lower() != "jsonl" and out is None:
            raise OptionError(f"--format {format} needs --out")
        return format.lower()
    if out is None or out.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    if out.suffix.lower() == ".json":
        return "coco"
    folders = " and ".join(f for f in formats if f not in ("jsonl", "coco"))
    raise OptionError(f"{out}: give --format {'|'.join(formats)} (a folder is written for {folders})")
