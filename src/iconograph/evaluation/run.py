"""One call per command: evaluate a predictions file (labels or boxes), write the full report."""

from __future__ import annotations

import json
import os
from pathlib import Path


def evaluate_files(
    predictions: str | os.PathLike,
    truth: str | os.PathLike,
    *,
    report: str | os.PathLike | None = None,
    json_out: str | os.PathLike | None = None,
    multi_label: bool | None = None,
) -> dict:
    """Metrics of a predictions file against the truth (``iconograph evaluate``): label metrics,
    or COCO box (and mask) metrics when the records have boxes, or semantic IoU when predictions
    and truth are folders of label-map PNGs; optionally written as JSON and as an HTML
    report. ``metrics["task"]`` says which (``detection`` for boxes)."""
    from iconograph.engine.files import atomic_write_text
    from iconograph.evaluation.detections import evaluate_detections, is_detection_file
    from iconograph.evaluation.masks import evaluate_label_maps, is_label_map_folder

    boxes = is_detection_file(predictions)
    label_maps = is_label_map_folder(predictions)
    if label_maps:
        metrics = evaluate_label_maps(predictions, truth)
    elif boxes:
        metrics = evaluate_detections(predictions, truth)
    else:
        from iconograph.evaluation.metrics import evaluate

        metrics = evaluate(predictions, truth, multi_label=multi_label)
    if json_out:
        atomic_write_text(json_out, json.dumps(metrics, indent=2))
    if report and label_maps:
        from iconograph.evaluation.masks import label_map_image_quality
        from iconograph.evaluation.report.detection import write_label_map_report

        write_label_map_report(metrics, label_map_image_quality(predictions, truth), report)
    elif report and boxes:
        from iconograph.evaluation.detections import mask_image_quality
        from iconograph.evaluation.report.detection import write_detection_report

        scored = mask_image_quality(predictions, truth) if "mask_pr_curves" in metrics else None
        write_detection_report(metrics, report, scored=scored)
    elif report:
        from iconograph.evaluation.report import write_full_report

        write_full_report(predictions, truth, report, metrics=metrics, multi_label=multi_label)
    return metrics


def report_files(
    predictions: str | os.PathLike,
    truth: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str | None = None,
    map_method: str = "auto",
    title: str = "iconograph evaluation",
    multi_label: bool | None = None,
    **embedder_options,
) -> Path:
    """The evaluation report (``iconograph report``); the embedding map uses ``model`` (a backbone
    or a model folder written by ``train``), else the scores."""
    from iconograph.evaluation.report import write_full_report

    embedder = None
    if model:
        from iconograph.engine.embed import Embedder
        from iconograph.learning.model_folder import TrainedModel, is_model_dir

        device = embedder_options.get("device")
        spec = TrainedModel.load(model).load_backbone(device) if is_model_dir(model) else model
        embedder = Embedder(spec, **embedder_options)
    return write_full_report(
        predictions, truth, out, embedder=embedder, map_method=map_method, title=title, multi_label=multi_label
    )
